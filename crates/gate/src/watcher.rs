//! Follows the keys directory: file-system events, debounced (a file whose
//! writer has not closed it is held back on its own), plus a periodic full
//! rescan as a safety net for lost events.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher as _};

/// What the watcher drives: the key store, and the policy and revocation
/// files beside it.
pub trait Reload: Send + Sync + 'static {
    /// Directories to watch (non-recursively).
    fn dirs(&self) -> Vec<PathBuf>;
    /// Files of interest in those directories. Those that are symlinks into
    /// a directory not watched anyway have their target's directory watched
    /// too, and a change there is reported as a change of the link.
    fn files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Entries `names` of `dir` changed.
    fn changed(&self, dir: &Path, names: HashSet<String>);
    /// Re-examine everything (periodic, or events were lost).
    fn rescan(&self, why: &str);
}

/// Default interval of the full rescan that repairs lost file events.
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(60);

/// Timing of the watcher.
#[derive(Debug, Clone, Copy)]
pub struct WatchConfig {
    /// Quiet time after the last event before a batch is applied, so a file
    /// written in several steps is read once it is whole. Default: 50 ms.
    pub debounce: Duration,
    /// Longest a batch waits under a constant stream of events. Default:
    /// 300 ms, which keeps every change visible well within 1 s.
    pub max_delay: Duration,
    /// Longest a file written to and not yet closed is held back, so one
    /// replaced in place is not read between its truncation and its bytes
    /// (which would fail its app closed for a moment). Only that file waits;
    /// the rest of its batch is applied as usual. Default: 900 ms, still
    /// within the 1 s a change takes to show.
    pub max_write_delay: Duration,
    /// Full rescan interval. Default: 60 s.
    pub rescan_interval: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(50),
            max_delay: Duration::from_millis(300),
            max_write_delay: Duration::from_millis(900),
            rescan_interval: DEFAULT_RESCAN_INTERVAL,
        }
    }
}

enum Message {
    Fs(notify::Result<notify::Event>),
    Stop,
}

/// A running watcher; dropping it stops the thread.
pub struct WatcherHandle {
    tx: mpsc::Sender<Message>,
    thread: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for WatcherHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WatcherHandle")
    }
}

impl Drop for WatcherHandle {
    fn drop(&mut self) {
        let _ = self.tx.send(Message::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts watching the target's directories on a thread of its own. Every
/// event names the entries that changed; entries Kubernetes uses for its
/// atomic swap (`..data`, `..2024_...`) trigger a full rescan, which re-reads
/// only files whose fingerprint changed.
pub fn watch(target: Arc<dyn Reload>, config: WatchConfig) -> notify::Result<WatcherHandle> {
    let (tx, rx) = mpsc::channel();
    let events = tx.clone();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = events.send(Message::Fs(event));
    })?;
    let mut dirs = target.dirs();
    dirs.sort();
    dirs.dedup();
    for dir in &dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    let mut links = Links {
        base: dirs,
        ..Links::default()
    };
    links.refresh(target.files(), &mut watcher);
    let thread = thread::Builder::new()
        .name("appauth-watcher".into())
        .spawn(move || {
            // Owned here so the OS watch lives exactly as long as the loop.
            run(target.as_ref(), &rx, config, &mut watcher, &mut links);
        })
        .map_err(notify::Error::io)?;
    Ok(WatcherHandle {
        tx,
        thread: Some(thread),
    })
}

fn run(
    target: &dyn Reload,
    rx: &mpsc::Receiver<Message>,
    config: WatchConfig,
    watcher: &mut notify::RecommendedWatcher,
    links: &mut Links,
) {
    let mut next_rescan = Instant::now() + config.rescan_interval;
    // Files written to and not yet closed, and when their first write was
    // seen: each is held back until its close, or `max_write_delay`.
    let mut writing: HashMap<PathBuf, Instant> = HashMap::new();
    loop {
        let due = writing
            .values()
            .min()
            .map(|&since| since + config.max_write_delay);
        let wake = due.map_or(next_rescan, |due| due.min(next_rescan));
        let mut batch = Batch::new(&links.aliases, &mut writing);
        match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) if Instant::now() >= next_rescan => {
                target.rescan("periodic");
                links.refresh(target.files(), watcher);
                next_rescan = Instant::now() + config.rescan_interval;
                continue;
            }
            // A held file's wait is over: `finish` gives it up.
            Err(RecvTimeoutError::Timeout) => {}
            Ok(Message::Fs(first)) => {
                batch.add(first);
                let started = Instant::now();
                loop {
                    let left = config.max_delay.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    match rx.recv_timeout(config.debounce.min(left)) {
                        Ok(Message::Fs(event)) => batch.add(event),
                        Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                        Err(RecvTimeoutError::Timeout) => break,
                    }
                }
            }
        }
        let (full_rescan, why, names) = batch.finish(Instant::now(), config.max_write_delay);
        if full_rescan {
            target.rescan(why);
            next_rescan = Instant::now() + config.rescan_interval;
        } else {
            for (dir, names) in names {
                target.changed(&dir, names);
            }
        }
        links.refresh(target.files(), watcher);
    }
}

/// Symlinks that point out of the watched directories, and the directories
/// of their targets, watched as well.
#[derive(Default)]
struct Links {
    /// Watched anyway.
    base: Vec<PathBuf>,
    /// Watched for link targets.
    extra: HashSet<PathBuf>,
    /// Canonical target file -> the links that point at it.
    aliases: HashMap<PathBuf, Vec<PathBuf>>,
}

impl Links {
    fn refresh(&mut self, files: Vec<PathBuf>, watcher: &mut impl notify::Watcher) {
        let mut aliases: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
        for link in files {
            let is_link = std::fs::symlink_metadata(&link).is_ok_and(|m| m.is_symlink());
            let Some(target) = is_link.then(|| link.canonicalize().ok()).flatten() else {
                continue;
            };
            // Targets inside a watched directory (Kubernetes' `..data/...`)
            // are already followed through the directory's own events.
            if self.base.iter().any(|d| target.starts_with(d)) {
                continue;
            }
            aliases.entry(target).or_default().push(link);
        }
        let wanted: HashSet<PathBuf> = aliases
            .keys()
            .filter_map(|t| t.parent().map(Path::to_path_buf))
            .collect();
        for gone in self.extra.difference(&wanted) {
            let _ = watcher.unwatch(gone);
        }
        let mut watched = HashSet::new();
        for dir in wanted {
            if self.extra.contains(&dir) {
                watched.insert(dir);
                continue;
            }
            match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!(dir = %dir.display(), "watching a symlink target directory");
                    watched.insert(dir);
                }
                Err(e) => tracing::warn!(
                    dir = %dir.display(), error = %e,
                    "cannot watch the directory a key or config symlink points into; \
                     changes there are seen at the periodic rescan"
                ),
            }
        }
        self.extra = watched;
        self.aliases = aliases;
    }
}

struct Batch<'a> {
    names: HashMap<PathBuf, HashSet<String>>,
    /// Paths the events named, resolved to names by `finish`.
    touched: HashSet<PathBuf>,
    /// Files written to (or created) whose writer has not closed them yet,
    /// kept from one batch to the next.
    writing: &'a mut HashMap<PathBuf, Instant>,
    full_rescan: bool,
    why: &'static str,
    aliases: &'a HashMap<PathBuf, Vec<PathBuf>>,
}

impl<'a> Batch<'a> {
    fn new(
        aliases: &'a HashMap<PathBuf, Vec<PathBuf>>,
        writing: &'a mut HashMap<PathBuf, Instant>,
    ) -> Self {
        Self {
            names: HashMap::new(),
            touched: HashSet::new(),
            writing,
            full_rescan: false,
            why: "",
            aliases,
        }
    }

    fn add(&mut self, event: notify::Result<notify::Event>) {
        match event {
            Ok(event) => {
                if event.need_rescan() {
                    self.rescan("the OS dropped file events");
                }
                match event.kind {
                    EventKind::Modify(ModifyKind::Data(_)) => {
                        for path in &event.paths {
                            self.writing
                                .entry(path.clone())
                                .or_insert_with(Instant::now);
                        }
                    }
                    // A new name for an existing file (a symlink, a hard
                    // link) has no writer to wait for; a new file does.
                    EventKind::Create(CreateKind::File) => {
                        for path in event.paths.iter().filter(|p| is_new_file(p)) {
                            self.writing
                                .entry(path.clone())
                                .or_insert_with(Instant::now);
                        }
                    }
                    // Closed, deleted, or renamed away: nothing to wait for
                    // under that name.
                    EventKind::Access(AccessKind::Close(AccessMode::Write))
                    | EventKind::Remove(_)
                    | EventKind::Modify(ModifyKind::Name(_)) => {
                        for path in &event.paths {
                            self.writing.remove(path);
                        }
                    }
                    _ => {}
                }
                self.touched.extend(event.paths);
            }
            Err(e) => {
                tracing::warn!(error = %e, "file watch error; rescanning");
                self.rescan("watch error");
            }
        }
    }

    /// The batch to apply at `now`: every path touched whose writer is done,
    /// and every held file whose `max_write_delay` is over, which stops
    /// being held. A file still held is left out: its close, or its time
    /// running out, brings it in a later batch.
    fn finish(
        mut self,
        now: Instant,
        max_write_delay: Duration,
    ) -> (bool, &'static str, HashMap<PathBuf, HashSet<String>>) {
        let mut ready: Vec<PathBuf> = std::mem::take(&mut self.touched)
            .into_iter()
            .filter(|path| !self.writing.contains_key(path))
            .collect();
        self.writing.retain(|path, since| {
            let over = now >= *since + max_write_delay;
            if over {
                ready.push(path.clone());
            }
            !over
        });
        for path in &ready {
            self.add_path(path);
        }
        (self.full_rescan, self.why, self.names)
    }

    fn add_path(&mut self, path: &Path) {
        if let Some(links) = self.aliases.get(path) {
            for link in links {
                self.add_name(link);
            }
        }
        self.add_name(path);
    }

    fn add_name(&mut self, path: &Path) {
        match path.file_name().and_then(|n| n.to_str()) {
            // Kubernetes' atomic writer swaps the `..data` symlink to a new
            // `..<timestamp>` directory: every key may have changed.
            Some(name) if name.starts_with("..") => self.rescan("Kubernetes ..data swap"),
            Some(name) => {
                let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                self.names.entry(dir).or_default().insert(name.to_owned());
            }
            // The directory itself (moved, deleted or its attributes changed).
            None => self.rescan("directory event"),
        }
    }

    fn rescan(&mut self, why: &'static str) {
        self.full_rescan = true;
        self.why = why;
    }
}

/// A regular file with no other name: one just created by its writer, not
/// a link to a file that is already whole.
fn is_new_file(path: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    let one_name = {
        use std::os::unix::fs::MetadataExt as _;
        meta.nlink() == 1
    };
    #[cfg(not(unix))]
    let one_name = true;
    meta.is_file() && one_name
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::sync::Mutex;

    use super::*;

    /// Reads each changed file as the store would, and keeps what it read.
    struct Recorder {
        dir: PathBuf,
        read: Mutex<Vec<String>>,
    }

    impl Reload for Recorder {
        fn dirs(&self) -> Vec<PathBuf> {
            vec![self.dir.clone()]
        }
        fn changed(&self, dir: &Path, names: HashSet<String>) {
            for name in names.iter().filter(|n| n.ends_with("_public.pem")) {
                if let Ok(text) = std::fs::read_to_string(dir.join(name)) {
                    self.read.lock().unwrap().push(text);
                }
            }
        }
        fn rescan(&self, _why: &str) {}
    }

    impl Recorder {
        /// Watches `dir` with `config`, recording what each change reads.
        fn watching(dir: &Path, config: WatchConfig) -> (Arc<Self>, WatcherHandle) {
            let target = Arc::new(Recorder {
                dir: dir.canonicalize().unwrap(),
                read: Mutex::new(Vec::new()),
            });
            let handle = watch(target.clone(), config).unwrap();
            (target, handle)
        }

        /// Everything read once each of `texts` has been, or `within` passed.
        fn wait_for(&self, texts: &[&str], within: Duration) -> Vec<String> {
            let deadline = Instant::now() + within;
            loop {
                let read = self.read.lock().unwrap().clone();
                if Instant::now() >= deadline || texts.iter().all(|t| read.iter().any(|r| r == t)) {
                    return read;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Files held back for a minute unless closed: what these tests see
    /// comes from closes and from the batching itself, never from the delay
    /// running out.
    fn holding_a_minute() -> WatchConfig {
        WatchConfig {
            max_write_delay: Duration::from_secs(60),
            ..WatchConfig::default()
        }
    }

    #[test]
    fn a_file_rewritten_in_place_is_read_once_its_writer_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a_public.pem");
        std::fs::write(&file, "old").unwrap();
        let (target, _watching) = Recorder::watching(dir.path(), WatchConfig::default());
        // A writer that stalls between its truncation and its bytes, six
        // debounce times: a loaded machine's, or one writing in pieces.
        let mut writer = std::fs::File::create(&file).unwrap();
        thread::sleep(Duration::from_millis(300));
        writer.write_all(b"new").unwrap();
        drop(writer);
        let read = target.wait_for(&["new"], Duration::from_secs(1));
        assert!(read.contains(&"new".to_owned()), "read {read:?}");
        assert!(!read.iter().any(String::is_empty), "read {read:?}");
    }

    /// A file its writer keeps open (an editor's swap file, a slow copy)
    /// holds back only itself: another key's change is applied as usual.
    #[test]
    fn a_file_held_open_holds_back_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let held = dir.path().join("b_public.pem");
        std::fs::write(&held, "b-old").unwrap();
        let (target, _watching) = Recorder::watching(dir.path(), holding_a_minute());
        let mut writer = std::fs::File::create(&held).unwrap();
        writer.write_all(b"b-part").unwrap();
        writer.flush().unwrap();
        std::fs::write(dir.path().join("a_public.pem"), "a-new").unwrap();
        let read = target.wait_for(&["a-new"], Duration::from_secs(10));
        assert!(read.contains(&"a-new".to_owned()), "read {read:?}");
        assert!(
            !read.iter().any(|r| r.is_empty() || r == "b-part"),
            "read {read:?}"
        );
        writer.write_all(b"-rest").unwrap();
        drop(writer);
        let read = target.wait_for(&["b-part-rest"], Duration::from_secs(10));
        assert!(read.contains(&"b-part-rest".to_owned()), "read {read:?}");
    }

    /// A symlink or a hard link made to a file that is already whole has no
    /// writer to wait for: it is read at the debounce, not held back.
    #[test]
    fn a_link_to_a_whole_file_is_read_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        std::fs::write(dir.path().join("soft.pem"), "soft").unwrap();
        std::fs::write(dir.path().join("hard.pem"), "hard").unwrap();
        let (target, _watching) = Recorder::watching(&keys, holding_a_minute());
        std::os::unix::fs::symlink(dir.path().join("soft.pem"), keys.join("c_public.pem")).unwrap();
        std::fs::hard_link(dir.path().join("hard.pem"), keys.join("d_public.pem")).unwrap();
        let read = target.wait_for(&["soft", "hard"], Duration::from_secs(10));
        assert!(
            read.contains(&"soft".to_owned()) && read.contains(&"hard".to_owned()),
            "read {read:?}"
        );
    }

    /// A writer that never closes its file is read as it stands once
    /// `max_write_delay` is over, so no change waits past it.
    #[test]
    fn a_file_never_closed_is_read_after_the_write_delay() {
        let dir = tempfile::tempdir().unwrap();
        let config = WatchConfig {
            max_write_delay: Duration::from_millis(200),
            ..WatchConfig::default()
        };
        let (target, _watching) = Recorder::watching(dir.path(), config);
        let mut writer = std::fs::File::create(dir.path().join("e_public.pem")).unwrap();
        writer.write_all(b"held").unwrap();
        writer.flush().unwrap();
        let read = target.wait_for(&["held"], Duration::from_secs(10));
        assert!(read.contains(&"held".to_owned()), "read {read:?}");
        drop(writer);
    }
}
