//! The journal: every write accepted in failover mode, as the command
//! itself (RESP bytes, as the client sent it), in order, until it has been
//! replayed upstream. Replaying commands rather than values is what makes
//! counters and list pushes converge with what others wrote meanwhile.
//!
//! Always kept in memory (bounded by `journal_max_bytes`: past it, writes
//! are refused rather than journaled partly). With `journal_path` it is also
//! appended to a file — plain RESP, the same format as Redis' AOF — synced
//! per the `fsync` policy, and loaded on the next start if the proxy
//! stopped before replaying it.
//!
//! Replay records its progress upstream in a marker key named after the
//! journal's id (see `replay`); the id is kept next to the file
//! (`<journal_path>.id`) so a restart after a crash mid-replay resumes where
//! the marker says, and is renewed whenever the journal is emptied.
//!
//! Entries that fail to replay are dead letters: logged, counted, kept in
//! memory and appended to `dead_letter_path` when set. Never dropped.
//!
//! Each entry carries its slot (0 with one Redis) and a sequence number
//! (its place since the id was issued); a replay round takes the oldest
//! entries of one slot wherever they are ([`Journal::slot_round`],
//! [`Journal::take`]): with a Redis Cluster, a slot whose master answers is
//! not held back by one whose master does not.

use super::{FailoverConfig, Fsync};
use crate::observe;
use crate::protocol::request::{self, Limits, Parsed};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Why the journal cannot take or load an entry.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("failover journal full ({0} bytes): write refused")]
    Full(u64),
    #[error("journal file {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl JournalError {
    fn io(path: &Path, source: std::io::Error) -> JournalError {
        JournalError::Io { path: path.display().to_string(), source }
    }
}

/// One journaled write.
struct Entry {
    /// Its place among the entries since the journal's id was issued.
    seq: u64,
    /// Its keys' slot (0 with one Redis).
    slot: u16,
    /// `None` once taken (replayed, or a dead letter), until it is the
    /// oldest.
    bytes: Option<Bytes>,
}

/// Dead letters kept in memory (beyond this many only the file, the log
/// and the counter have them).
const MAX_DEAD_IN_MEMORY: usize = 10_000;

pub struct Journal {
    /// Oldest first; taken entries (`None`) stay until they are oldest.
    entries: VecDeque<Entry>,
    /// Entries not taken.
    live: usize,
    /// The next entry's [`Entry::seq`].
    next_seq: u64,
    /// Entries not taken, per slot.
    per_slot: HashMap<u16, usize>,
    /// The upstream key recording how far replay got, named after the id.
    marker: Bytes,
    bytes: u64,
    max_bytes: u64,
    file: Option<JournalFile>,
    dead: DeadLetters,
}

struct JournalFile {
    path: PathBuf,
    /// Where the id is kept.
    id_path: PathBuf,
    file: File,
    fsync: Fsync,
    /// Appended since the last sync.
    dirty: bool,
}

/// Entries that failed to replay, with the error Redis gave.
struct DeadLetters {
    count: usize,
    recent: VecDeque<(Bytes, String)>,
    file: Option<(PathBuf, File)>,
}

impl Journal {
    /// Opens the journal; with a file, also returns the entries a previous
    /// run left in it (they are in the journal already, to be replayed, in
    /// the slots `slot_of` says).
    pub fn open(
        config: &FailoverConfig,
        slot_of: impl Fn(&[u8]) -> u16,
    ) -> Result<(Journal, Vec<Bytes>), JournalError> {
        let mut journal = Journal {
            entries: VecDeque::new(),
            live: 0,
            next_seq: 0,
            per_slot: HashMap::new(),
            marker: marker(random_id()),
            bytes: 0,
            max_bytes: config.journal_max_bytes,
            file: None,
            dead: DeadLetters { count: 0, recent: VecDeque::new(), file: None },
        };
        if let Some(path) = &config.dead_letter_path {
            journal.dead.file = Some((path.clone(), append_to(path)?));
        }
        let Some(path) = &config.journal_path else {
            return Ok((journal, Vec::new()));
        };
        let loaded = load(path)?;
        let id_path = sibling(path, ".id");
        let file =
            JournalFile { path: path.clone(), id_path, file: append_to(path)?, fsync: config.fsync, dirty: false };
        let id = match file.read_id()? {
            Some(id) if !loaded.is_empty() => id,
            _ => file.write_id(random_id())?,
        };
        journal.marker = marker(id);
        journal.file = Some(file);
        for entry in &loaded {
            journal.push(entry.clone(), slot_of(entry));
        }
        observe::journal_entries(journal.live);
        Ok((journal, loaded))
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn push(&mut self, entry: Bytes, slot: u16) {
        self.bytes += entry.len() as u64;
        self.live += 1;
        *self.per_slot.entry(slot).or_default() += 1;
        self.entries.push_back(Entry { seq: self.next_seq, slot, bytes: Some(entry) });
        self.next_seq += 1;
    }

    /// Drops the taken entries that became the oldest.
    fn trim(&mut self) {
        while self.entries.front().is_some_and(|e| e.bytes.is_none()) {
            self.entries.pop_front();
        }
        observe::journal_entries(self.live);
    }

    /// The oldest entries (at most `n`) of the slot of the oldest entry
    /// whose slot is `ready`, with their sequence numbers (with one Redis,
    /// every entry is of slot 0: the oldest entries). `None` when no
    /// entry's slot is ready.
    pub fn slot_round(&self, n: usize, ready: impl Fn(u16) -> bool) -> Option<(u16, Vec<(u64, Bytes)>)> {
        let mut live = self.entries.iter().filter_map(|e| Some((e.seq, e.slot, e.bytes.as_ref()?)));
        let (seq, slot, first) = live.find(|&(_, slot, _)| ready(slot))?;
        let rest = live.filter(|&(_, s, _)| s == slot).map(|(seq, _, bytes)| (seq, bytes.clone()));
        let round = std::iter::once((seq, first.clone())).chain(rest).take(n).collect();
        Some((slot, round))
    }

    /// Takes out the entry numbered `seq` (replayed, or rejected: then the
    /// caller makes it a dead letter); its bytes.
    pub fn take(&mut self, seq: u64) -> Option<Bytes> {
        let index = self.entries.binary_search_by_key(&seq, |e| e.seq).ok()?;
        let entry = self.entries.get_mut(index)?;
        let (bytes, slot) = (entry.bytes.take()?, entry.slot);
        self.bytes -= bytes.len() as u64;
        self.live -= 1;
        if let Some(n) = self.per_slot.get_mut(&slot) {
            *n -= 1;
            if *n == 0 {
                self.per_slot.remove(&slot);
            }
        }
        self.trim();
        Some(bytes)
    }

    /// True while entries of `slot` are left.
    pub fn holds_slot(&self, slot: u16) -> bool {
        self.per_slot.contains_key(&slot)
    }

    /// True while more than `n` entries of `slot` are left.
    pub fn holds_slot_beyond(&self, slot: u16, n: usize) -> bool {
        self.per_slot.get(&slot).is_some_and(|&left| left > n)
    }

    /// True when an entry of `len` bytes fits.
    pub fn has_room(&self, len: usize) -> bool {
        self.bytes + len as u64 <= self.max_bytes
    }

    /// Appends one write. The in-memory journal always takes it (callers
    /// check [`Journal::has_room`] first); a failing file write is logged
    /// and returned, the entry stays journaled in memory.
    pub fn append(&mut self, entry: Bytes, slot: u16) -> Result<(), JournalError> {
        if !self.has_room(entry.len()) {
            return Err(JournalError::Full(self.max_bytes));
        }
        let written = match &mut self.file {
            Some(f) => f.append(&entry),
            None => Ok(()),
        };
        self.push(entry, slot);
        observe::journal_entries(self.live);
        written
    }

    /// The upstream key a replay records its progress in.
    pub fn marker(&self) -> Bytes {
        self.marker.clone()
    }

    /// Empties the journal (everything was replayed or discarded),
    /// truncating its file, under a new id: sequence numbers start again.
    pub fn clear(&mut self) -> Result<(), JournalError> {
        self.entries.clear();
        self.live = 0;
        self.per_slot.clear();
        self.bytes = 0;
        observe::journal_entries(0);
        self.next_seq = 0;
        let id = random_id();
        self.marker = marker(id);
        match &mut self.file {
            // The new id first: a crash in between replays the old entries
            // again (at least once), never skips new ones.
            Some(f) => f.write_id(id).and_then(|_| f.truncate()),
            None => Ok(()),
        }
    }

    /// Syncs the file if the policy is `everysec` and something was written.
    pub fn sync_due(&mut self) -> Result<(), JournalError> {
        match &mut self.file {
            Some(f) if f.fsync == Fsync::EverySec && f.dirty => f.sync(),
            _ => Ok(()),
        }
    }

    /// Keeps an entry that failed to replay, with Redis' error.
    pub fn dead_letter(&mut self, entry: Bytes, error: String) {
        tracing::warn!(command = %printable(&entry), %error, "journal entry failed to replay: kept as a dead letter");
        let dead = &mut self.dead;
        dead.count += 1;
        observe::dead_letters(dead.count);
        if let Some((path, file)) = &mut dead.file {
            if let Err(e) = file.write_all(&entry).and_then(|_| file.sync_data()) {
                tracing::error!(path = %path.display(), error = %e, "cannot write the dead-letter file");
            }
        }
        if dead.recent.len() == MAX_DEAD_IN_MEMORY {
            dead.recent.pop_front();
        }
        dead.recent.push_back((entry, error));
    }

    /// How many entries failed to replay since the start.
    pub fn dead_letters(&self) -> usize {
        self.dead.count
    }

    /// The most recent dead letters, oldest first (command, error).
    pub fn recent_dead_letters(&self) -> impl Iterator<Item = (&Bytes, &String)> {
        self.dead.recent.iter().map(|(e, err)| (e, err))
    }
}

impl JournalFile {
    fn append(&mut self, entry: &[u8]) -> Result<(), JournalError> {
        self.file.write_all(entry).map_err(|e| self.error(e))?;
        self.dirty = true;
        if self.fsync == Fsync::Always {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), JournalError> {
        self.dirty = false;
        self.file.sync_data().map_err(|e| self.error(e))
    }

    /// The id kept next to the file, if there is a readable one.
    fn read_id(&self) -> Result<Option<u64>, JournalError> {
        match std::fs::read_to_string(&self.id_path) {
            Ok(text) => Ok(u64::from_str_radix(text.trim(), 16).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(JournalError::io(&self.id_path, source)),
        }
    }

    /// Replaces the id file (write, sync, rename): `id`.
    fn write_id(&self, id: u64) -> Result<u64, JournalError> {
        let tmp = sibling(&self.id_path, ".tmp");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(format!("{id:016x}\n").as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.id_path)
        };
        write().map_err(|source| JournalError::io(&self.id_path, source))?;
        Ok(id)
    }

    fn truncate(&mut self) -> Result<(), JournalError> {
        self.file.set_len(0).and_then(|_| self.file.sync_all()).map_err(|e| self.error(e))
    }

    fn error(&self, source: std::io::Error) -> JournalError {
        let err = JournalError::io(&self.path, source);
        tracing::error!(error = %err, "journal file write failed; the entry is kept in memory only");
        err
    }
}

fn append_to(path: &Path) -> Result<File, JournalError> {
    OpenOptions::new().create(true).append(true).open(path).map_err(|source| JournalError::io(path, source))
}

/// The marker key of journal `id`.
fn marker(id: u64) -> Bytes {
    Bytes::from(format!("__nearcache__:replay:{id:016x}"))
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// 64 random bits (std's per-process random hash keys, mixed with the pid
/// and the time): marker keys of proxies sharing an upstream never collide.
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.finish()
}

/// Reads the entries of a journal file; a torn last entry (the process
/// stopped mid-write, so the write was never acknowledged) is cut off.
fn load(path: &Path) -> Result<Vec<Bytes>, JournalError> {
    let io = |source| JournalError::io(path, source);
    let mut data = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut data).map_err(io)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let data = Bytes::from(data);
    let (entries, complete) = split_entries(&data);
    if complete < data.len() {
        tracing::warn!(path = %path.display(), bytes = data.len() - complete, "journal ends with a torn entry: cut off");
        OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(complete as u64)).map_err(io)?;
    }
    Ok(entries)
}

/// Splits RESP commands off `data`; returns them and how many bytes they
/// cover.
fn split_entries(data: &Bytes) -> (Vec<Bytes>, usize) {
    let limits = Limits::default();
    let (mut args, mut inline) = (Vec::new(), Vec::new());
    let mut entries = Vec::new();
    let mut at = 0;
    while at < data.len() {
        match request::parse(&data[at..], &limits, &mut args, &mut inline) {
            Ok(Parsed::Multibulk { len }) => {
                entries.push(data.slice(at..at + len));
                at += len;
            }
            Ok(Parsed::Empty { len }) => at += len,
            _ => break,
        }
    }
    (entries, at)
}

/// A journal entry shown in a log line: its arguments, lossy, cut short.
pub fn printable(entry: &[u8]) -> String {
    let (mut args, mut inline) = (Vec::new(), Vec::new());
    let text = match request::parse(entry, &Limits::default(), &mut args, &mut inline) {
        Ok(Parsed::Multibulk { .. }) => {
            args.iter().map(|r| String::from_utf8_lossy(&entry[r.clone()])).collect::<Vec<_>>().join(" ")
        }
        _ => String::from_utf8_lossy(entry).into_owned(),
    };
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(parts: &[&str]) -> Bytes {
        let mut out = bytes::BytesMut::new();
        crate::protocol::encode::command(&mut out, parts.iter().map(|p| p.as_bytes()));
        out.freeze()
    }

    fn config(dir: &Path, fsync: Fsync) -> FailoverConfig {
        FailoverConfig {
            journal_path: Some(dir.join("journal.aof")),
            dead_letter_path: Some(dir.join("journal.aof.dead")),
            fsync,
            ..FailoverConfig::default()
        }
    }

    /// A fresh folder, removed when the test ends.
    struct TempDir(PathBuf);

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp_dir(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("nearcache-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    #[test]
    fn entries_survive_a_restart_and_a_torn_tail_is_cut() {
        let dir = temp_dir("restart");
        let marker = {
            let (mut j, loaded) = Journal::open(&config(&dir, Fsync::Always), |_| 0).expect("open");
            assert!(loaded.is_empty());
            j.append(cmd(&["INCR", "c"]), 0).expect("append");
            j.append(cmd(&["LPUSH", "l", "a b"]), 0).expect("append");
            j.marker()
        };
        let path = dir.join("journal.aof");
        let mut f = OpenOptions::new().append(true).open(&path).expect("reopen");
        f.write_all(b"*2\r\n$4\r\nINCR\r\n$1").expect("torn write");
        let (j, loaded) = Journal::open(&config(&dir, Fsync::No), |_| 0).expect("reload");
        assert_eq!(loaded, vec![cmd(&["INCR", "c"]), cmd(&["LPUSH", "l", "a b"])]);
        assert_eq!(j.len(), 2);
        assert_eq!(j.marker(), marker, "entries left to replay keep their journal's id");
        assert_eq!(
            std::fs::metadata(&path).expect("meta").len() as usize,
            loaded.iter().map(Bytes::len).sum::<usize>()
        );
    }

    #[test]
    fn replayed_entries_leave_and_clear_truncates() {
        let dir = temp_dir("clear");
        let (mut j, _) = Journal::open(&config(&dir, Fsync::EverySec), |_| 0).expect("open");
        for i in 0..5 {
            j.append(cmd(&["SET", "k", &i.to_string()]), 0).expect("append");
        }
        j.sync_due().expect("sync");
        let round = |j: &Journal, n| j.slot_round(n, |_| true).map(|(_, round)| round).unwrap_or_default();
        assert_eq!(round(&j, 2), vec![(0, cmd(&["SET", "k", "0"])), (1, cmd(&["SET", "k", "1"]))]);
        assert!(j.take(0).is_some() && j.take(1).is_some());
        assert_eq!(round(&j, 1), vec![(2, cmd(&["SET", "k", "2"]))]);
        let refused = j.take(3).expect("entry 3");
        j.dead_letter(refused, "ERR refused".into());
        assert_eq!(round(&j, 5), vec![(2, cmd(&["SET", "k", "2"])), (4, cmd(&["SET", "k", "4"]))]);
        assert_eq!((j.len(), j.dead_letters()), (2, 1));
        let before = j.marker();
        j.clear().expect("clear");
        assert!(j.is_empty());
        assert_ne!(j.marker(), before, "an emptied journal gets a new id");
        let id = std::fs::read_to_string(dir.join("journal.aof.id")).expect("id file");
        assert!(j.marker().ends_with(id.trim().as_bytes()), "{id}");
        assert_eq!(std::fs::metadata(dir.join("journal.aof")).expect("meta").len(), 0);
        j.append(cmd(&["SET", "k", "5"]), 0).expect("append");
        assert_eq!(round(&j, 5), vec![(0, cmd(&["SET", "k", "5"]))], "a new id: sequence numbers start again");
    }

    #[test]
    fn a_cluster_round_takes_the_oldest_entries_of_a_ready_slot() {
        let (mut j, _) = Journal::open(&FailoverConfig::default(), |_| 0).expect("open");
        for (i, slot) in [7, 3, 7, 3, 9].into_iter().enumerate() {
            j.append(cmd(&["SET", "k", &i.to_string()]), slot).expect("append");
        }
        let (slot, round) = j.slot_round(10, |slot| slot != 7).expect("slot 3 is ready");
        assert_eq!(slot, 3);
        assert_eq!(round, vec![(1, cmd(&["SET", "k", "1"])), (3, cmd(&["SET", "k", "3"]))]);
        assert_eq!(j.slot_round(1, |_| true).map(|(slot, r)| (slot, r.len())), Some((7, 1)), "at most n");
        assert!(j.slot_round(10, |_| false).is_none());
        assert_eq!(j.take(3), Some(cmd(&["SET", "k", "3"])));
        assert_eq!(j.take(3), None, "taken once");
        assert!(j.holds_slot(3) && !j.holds_slot_beyond(3, 1) && j.holds_slot_beyond(7, 1));
        assert_eq!(j.take(1), Some(cmd(&["SET", "k", "1"])));
        assert!(!j.holds_slot(3) && j.holds_slot(7));
        assert_eq!(j.len(), 3);
        let live: Vec<Bytes> = j.entries.iter().filter_map(|e| e.bytes.clone()).collect();
        assert_eq!(live, vec![cmd(&["SET", "k", "0"]), cmd(&["SET", "k", "2"]), cmd(&["SET", "k", "4"])]);
        assert_eq!(j.take(0), Some(cmd(&["SET", "k", "0"])));
        assert_eq!(j.slot_round(10, |_| true).map(|(slot, r)| (slot, r[0].0)), Some((7, 2)));
    }

    #[test]
    fn full_journal_refuses_and_dead_letters_are_kept() {
        let dir = temp_dir("full");
        let config = FailoverConfig { journal_max_bytes: 40, ..config(&dir, Fsync::No) };
        let (mut j, _) = Journal::open(&config, |_| 0).expect("open");
        j.append(cmd(&["SET", "k", "v"]), 0).expect("fits");
        assert!(matches!(j.append(cmd(&["SET", "k", "a longer value"]), 0), Err(JournalError::Full(40))));
        j.dead_letter(cmd(&["INCR", "h"]), "WRONGTYPE".into());
        assert_eq!(j.dead_letters(), 1);
        assert_eq!(std::fs::read(dir.join("journal.aof.dead")).expect("dead file"), cmd(&["INCR", "h"]).to_vec());
        assert_eq!(printable(&cmd(&["INCR", "h"])), "INCR h");
    }
}
