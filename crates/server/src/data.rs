//! The central data API's built-in data set, so the demo returns real data.

use serde::Serialize;

/// A user record.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// Numeric id.
    pub id: u32,
    /// Display name.
    pub name: &'static str,
    /// Email address.
    pub email: &'static str,
    /// Team.
    pub team: &'static str,
}

/// Every user the demo API knows.
pub const USERS: &[User] = &[
    User {
        id: 1,
        name: "Ada Lovelace",
        email: "ada@example.com",
        team: "analytics",
    },
    User {
        id: 2,
        name: "Grace Hopper",
        email: "grace@example.com",
        team: "compilers",
    },
    User {
        id: 3,
        name: "Katherine Johnson",
        email: "katherine@example.com",
        team: "navigation",
    },
    User {
        id: 4,
        name: "Edsger Dijkstra",
        email: "edsger@example.com",
        team: "algorithms",
    },
    User {
        id: 5,
        name: "Barbara Liskov",
        email: "barbara@example.com",
        team: "platform",
    },
];

/// The user with `id`.
pub fn user(id: u32) -> Option<&'static User> {
    USERS.iter().find(|u| u.id == id)
}
