//! Log output: text on a terminal (coloured) or in a pipe (plain), or JSON
//! lines whose fields keep their JSON types.

use std::fmt;
use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Sets up logging to stderr; `RUST_LOG` overrides the `info` default.
/// Colour only when stderr is a terminal and `NO_COLOR` is unset, so pipes
/// and files get no escape codes.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.event_format(JsonLines).init();
    } else {
        let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        builder.with_ansi(colour).init();
    }
}

/// One JSON object per line, in the shape of tracing-subscriber's own JSON
/// format (`timestamp`, `level`, `fields`, `target`), except that numbers
/// and booleans stay numbers and booleans, and a field logged as a list is
/// a JSON list rather than the string of its Debug form.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let meta = event.metadata();
        let line = serde_json::json!({
            "timestamp": jiff::Timestamp::now().to_string(),
            "level": meta.level().as_str(),
            "fields": Value::Object(fields.0),
            "target": meta.target(),
        });
        writeln!(writer, "{line}")
    }
}

struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        // A list's Debug form (`["RS512", "PS512"]`) is also its JSON form;
        // anything else stays a string.
        let value = match serde_json::from_str::<Value>(&text) {
            Ok(list @ Value::Array(_)) => list,
            _ => Value::String(text),
        };
        self.0.insert(field.name().to_owned(), value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_keep_lists_numbers_and_strings() {
        let sink = Sink::default();
        let out = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                algorithms = ?vec!["RS512", "PS512"],
                apps = 3u64,
                ok = true,
                path = "/x [1]",
                detail = ?"[not a list",
                "verifying tokens"
            );
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        let fields = &line["fields"];
        assert_eq!(fields["algorithms"], serde_json::json!(["RS512", "PS512"]));
        assert_eq!(fields["apps"], 3);
        assert_eq!(fields["ok"], true);
        assert_eq!(fields["path"], "/x [1]");
        assert_eq!(fields["detail"], "\"[not a list\"");
        assert_eq!(fields["message"], "verifying tokens");
        assert_eq!(line["level"], "INFO");
    }
}
