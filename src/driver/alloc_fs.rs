//! Paths that tasks can write, opened the way a root process must open them.
//!
//! Everything under `<alloc_dir>/alloc/` is writable by the allocation's other tasks (docker and
//! exec mount it read-write as `/alloc`): any name there, and any directory on the way, may be a
//! symbolic link, a device node or a regular file planted to make the plugin (root) write or read
//! something else. So nothing here follows a link or opens a file before knowing what it is:
//!
//! - A path is walked one name at a time, each opened with `O_PATH | O_NOFOLLOW` relative to the
//!   directory before it (through `/proc/self/fd/<dir fd>/<name>`, which acts like `openat(2)`'s
//!   directory descriptor), and `fstat` on that descriptor tells what the name is. An `O_PATH`
//!   descriptor never runs a device's `open`, so merely looking at a device has no effect.
//! - Only then is the object itself opened for I/O, through `/proc/self/fd/<O_PATH fd>`: the very
//!   inode just checked, whatever the name points at by now.
//! - The operator's part of the path (Nomad's `data_dir`, which may hold symbolic links of the
//!   operator's own) is trusted: the allocation directory is opened following links, the rest of
//!   the path below it is walked as above. A path outside the allocation directory is walked from
//!   `/` the same way.
//!
//! Without `/proc` nothing is opened ([`FsError::NoProc`]): failing closed.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// What a name turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fifo,
    Directory,
    RegularFile,
    Symlink,
    CharDevice,
    BlockDevice,
    Socket,
    Unknown,
}

impl Kind {
    fn of(m: &Metadata) -> Kind {
        let t = m.file_type();
        if t.is_symlink() {
            Kind::Symlink
        } else if t.is_fifo() {
            Kind::Fifo
        } else if t.is_dir() {
            Kind::Directory
        } else if t.is_file() {
            Kind::RegularFile
        } else if t.is_char_device() {
            Kind::CharDevice
        } else if t.is_block_device() {
            Kind::BlockDevice
        } else if t.is_socket() {
            Kind::Socket
        } else {
            Kind::Unknown
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Fifo => "a FIFO",
            Kind::Directory => "a directory",
            Kind::RegularFile => "a regular file",
            Kind::Symlink => "a symbolic link",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
            Kind::Socket => "a socket",
            Kind::Unknown => "a file of unknown type",
        })
    }
}

/// Why a path was not opened.
#[derive(Debug)]
pub enum FsError {
    /// `at` (the path itself or a directory on the way) is `found` where `expected` was needed.
    WrongKind { at: PathBuf, found: Kind, expected: Kind },
    /// `at` does not exist (yet).
    Missing { at: PathBuf },
    /// The FIFO `at` exists but nobody reads it yet (`ENXIO`).
    NoReader { at: PathBuf },
    /// The file `at` is larger than `cap` bytes.
    TooLarge { at: PathBuf, cap: u64 },
    /// `path` is not an absolute path made of plain names.
    BadPath { path: PathBuf, why: &'static str },
    /// `/proc/self/fd` is not there (or does not show this process's descriptors).
    NoProc,
    /// Any other error, at `at`.
    Io { at: PathBuf, error: io::Error },
}

impl FsError {
    /// Not there yet, or no reader yet: worth trying again later. Anything else is the wrong
    /// kind of file or path and stays so (except [`FsError::Io`], which may pass).
    pub fn is_not_ready(&self) -> bool {
        matches!(self, FsError::Missing { .. } | FsError::NoReader { .. })
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::WrongKind { at, found, expected } => {
                write!(f, "{} is {found}, not {expected}", at.display())
            }
            FsError::Missing { at } => write!(f, "{} does not exist", at.display()),
            FsError::NoReader { at } => write!(f, "nobody reads the FIFO {} yet", at.display()),
            FsError::TooLarge { at, cap } => write!(f, "{} is larger than {cap} bytes", at.display()),
            FsError::BadPath { path, why } => write!(f, "{:?} {why}", path.display().to_string()),
            FsError::NoProc => f.write_str(
                "/proc/self/fd is not available, so paths that tasks can write cannot be opened \
                 without following symbolic links; mount /proc where the plugin runs",
            ),
            FsError::Io { at, error } => write!(f, "{}: {error}", at.display()),
        }
    }
}

impl std::error::Error for FsError {}

fn io_error(at: &Path, error: io::Error) -> FsError {
    let at = at.to_path_buf();
    match error.raw_os_error() {
        Some(libc::ENOENT) => FsError::Missing { at },
        Some(libc::ENXIO) => FsError::NoReader { at },
        _ => FsError::Io { at, error },
    }
}

/// `/proc/self/fd/<fd>`: the object an open descriptor refers to.
fn fd_path(f: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

/// `O_PATH` opens, links followed (`follow`) or not. `O_PATH` never opens the object for I/O.
fn open_path(path: &Path, follow: bool) -> io::Result<File> {
    let mut flags = libc::O_PATH | libc::O_CLOEXEC;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    OpenOptions::new().read(true).custom_flags(flags).open(path)
}

/// The names of an absolute path without `..`.
fn plain_names(path: &Path) -> Result<Vec<&OsStr>, FsError> {
    let bad = |why| FsError::BadPath {
        path: path.to_path_buf(),
        why,
    };
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return Err(bad("is not an absolute path"));
    }
    components
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(bad("has a \"..\" in it")),
        })
        .collect()
}

/// One plain name (no `/`, not `.` or `..`, not empty).
fn plain_name(name: &OsStr) -> Result<&OsStr, FsError> {
    let p = Path::new(name);
    match (p.components().next(), p.components().count()) {
        (Some(Component::Normal(n)), 1) if n == name => Ok(n),
        _ => Err(FsError::BadPath {
            path: p.to_path_buf(),
            why: "is not a plain file name",
        }),
    }
}

/// A directory held by an `O_PATH` descriptor. Names in it are looked at and opened relative to
/// it, never following a link.
#[derive(Debug)]
pub struct Dir {
    fd: File,
    path: PathBuf,
}

impl Dir {
    /// A directory the operator controls (`/`, the allocation directory): symbolic links in
    /// `path` are followed. Also checks that `/proc/self/fd` works (else [`FsError::NoProc`]).
    pub fn trusted(path: &Path) -> Result<Dir, FsError> {
        plain_names(path)?;
        let fd = open_path(path, true).map_err(|e| io_error(path, e))?;
        let meta = fd.metadata().map_err(|e| io_error(path, e))?;
        if !meta.is_dir() {
            return Err(FsError::WrongKind {
                at: path.to_path_buf(),
                found: Kind::of(&meta),
                expected: Kind::Directory,
            });
        }
        // The magic link must lead to this very directory, or fd-relative opens are impossible.
        match std::fs::metadata(fd_path(&fd)) {
            Ok(m) if m.dev() == meta.dev() && m.ino() == meta.ino() => {}
            _ => return Err(FsError::NoProc),
        }
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Where this directory is (as walked; for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Looks at `name` in this directory without following it or opening it for I/O.
    fn entry(&self, name: &OsStr) -> Result<(File, Kind, PathBuf), FsError> {
        let name = plain_name(name)?;
        let at = self.path.join(name);
        let fd = open_path(&fd_path(&self.fd).join(name), false).map_err(|e| io_error(&at, e))?;
        let kind = Kind::of(&fd.metadata().map_err(|e| io_error(&at, e))?);
        Ok((fd, kind, at))
    }

    /// The directory `name` in this one; a link or anything else there is refused.
    pub fn subdir(&self, name: &OsStr) -> Result<Dir, FsError> {
        let (fd, kind, at) = self.entry(name)?;
        if kind != Kind::Directory {
            return Err(FsError::WrongKind {
                at,
                found: kind,
                expected: Kind::Directory,
            });
        }
        Ok(Dir { fd, path: at })
    }

    /// The regular file `name` in this directory, if it holds at most `cap` bytes. A link, a
    /// FIFO, a device... is refused without being opened for reading.
    pub fn read_bounded(&self, name: &OsStr, cap: u64) -> Result<Vec<u8>, FsError> {
        let (fd, kind, at) = self.entry(name)?;
        if kind != Kind::RegularFile {
            return Err(FsError::WrongKind {
                at,
                found: kind,
                expected: Kind::RegularFile,
            });
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(fd_path(&fd))
            .map_err(|e| io_error(&at, e))?;
        let too_large = || FsError::TooLarge { at: at.clone(), cap };
        if file.metadata().map_err(|e| io_error(&at, e))?.len() > cap {
            return Err(too_large());
        }
        // The file may grow while it is read: never read more than the cap (and one byte, to see).
        let mut bytes = Vec::new();
        file.take(cap.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(&at, e))?;
        if bytes.len() as u64 > cap {
            return Err(too_large());
        }
        Ok(bytes)
    }

    /// Replaces the file `name` in this directory with `bytes`: writes `<name>.tmp` (a stale one
    /// is removed first, without following it; the new one is created with
    /// `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600), then renames it over `name` (which replaces
    /// whatever `name` was, a link included, and never writes through it).
    pub fn replace_file(&self, name: &OsStr, bytes: &[u8]) -> Result<(), FsError> {
        let name = plain_name(name)?;
        let mut tmp_name = name.to_os_string();
        tmp_name.push(".tmp");
        let base = fd_path(&self.fd);
        let (tmp, dest) = (base.join(&tmp_name), base.join(name));
        let tmp_at = self.path.join(&tmp_name);
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&tmp_at, e)),
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| io_error(&tmp_at, e))?;
        file.write_all(bytes).map_err(|e| io_error(&tmp_at, e))?;
        drop(file);
        std::fs::rename(&tmp, &dest).map_err(|e| io_error(&self.path.join(name), e))
    }
}

/// The directory holding `path`, reached without following links below the trusted allocation
/// directory (or below `/` for a path outside it), and `path`'s last name.
fn parent_of<'a>(path: &'a Path, alloc_dir: &Path) -> Result<(Dir, &'a OsStr), FsError> {
    let names = plain_names(path)?;
    let Some((last, parents)) = names.split_last() else {
        return Err(FsError::BadPath {
            path: path.to_path_buf(),
            why: "has no file name",
        });
    };
    let trusted = plain_names(alloc_dir)
        .ok()
        .filter(|a| !a.is_empty() && parents.starts_with(a));
    let (mut dir, below) = match trusted {
        Some(a) => (Dir::trusted(alloc_dir)?, &parents[a.len()..]),
        None => (Dir::trusted(Path::new("/"))?, parents),
    };
    for name in below {
        dir = dir.subdir(name)?;
    }
    Ok((dir, last))
}

/// Opens the FIFO at `path` for writing without blocking (`O_WRONLY | O_NONBLOCK`).
/// `alloc_dir` is the allocation directory Nomad named (trusted; empty: none): below it, and
/// everywhere for a path outside it, no name is followed. Anything at `path` but a FIFO — a
/// link, a regular file, a device, a directory — is refused without being opened for I/O, as
/// is a path through a link. [`FsError::is_not_ready`] errors (no FIFO yet, no reader yet) are
/// worth retrying.
pub fn open_fifo_for_write(path: &Path, alloc_dir: &Path) -> Result<File, FsError> {
    let (dir, name) = parent_of(path, alloc_dir)?;
    let (fd, kind, at) = dir.entry(name)?;
    if kind != Kind::Fifo {
        return Err(FsError::WrongKind {
            at,
            found: kind,
            expected: Kind::Fifo,
        });
    }
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(fd_path(&fd))
        .map_err(|e| io_error(&at, e))?;
    Ok(file)
}

/// Whether the FIFO that `writer` (an open write end) belongs to has a reader now. Probed with
/// a second write-only, non-blocking open of the same inode (through `/proc/self/fd`, so no
/// name is looked up again), closed at once: it fails with `ENXIO` exactly when no process has
/// the FIFO open for reading. Nothing is written, nothing blocks, and since the caller already
/// holds a write end, no reader is waiting in `open` for the probe to wake it.
pub fn has_reader(writer: &File) -> Result<bool, FsError> {
    let at = fd_path(writer);
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&at)
    {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(false),
        Err(e) => Err(io_error(&at, e)),
    }
}

/// The allocation directory Nomad named is gone (removed by Nomad's garbage collection): no
/// reader of its FIFOs will ever come back. An empty path (none given) is never gone; any error
/// but "not found" does not count as gone.
pub fn is_gone(alloc_dir: &Path) -> bool {
    !alloc_dir.as_os_str().is_empty()
        && matches!(std::fs::symlink_metadata(alloc_dir), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// The task's own directory on the host, `<alloc_dir>/<task>`: Nomad makes it before
/// StartTask, and no task of the allocation can reach it (docker and exec tasks get only the
/// shared `<alloc_dir>/alloc` and their own task directory). `task` must be a plain name.
pub fn task_dir(alloc_dir: &Path, task: &str) -> Result<Dir, FsError> {
    let name = plain_name(OsStr::new(task))?;
    Dir::trusted(alloc_dir)?.subdir(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::process::Command;

    /// A fresh directory laid out like an allocation: `<alloc>/alloc/logs`, `<alloc>/web`.
    fn alloc_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("alloc-fs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("alloc/logs")).unwrap();
        std::fs::create_dir_all(d.join("web")).unwrap();
        d
    }

    fn mkfifo(p: &Path) {
        assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
    }

    /// A reader of the FIFO that never blocks (so a writer can open it).
    fn reader(p: &Path) -> File {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(p)
            .unwrap()
    }

    fn fifo_path(d: &Path) -> PathBuf {
        d.join("alloc/logs/.web.stdout.fifo")
    }

    #[test]
    fn a_fifo_with_a_reader_is_written() {
        let d = alloc_dir("fifo");
        let p = fifo_path(&d);
        mkfifo(&p);
        let mut r = reader(&p);
        let mut w = open_fifo_for_write(&p, &d).unwrap();
        w.write_all(b"hello\n").unwrap();
        let mut got = [0u8; 6];
        r.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello\n");
        // Outside the allocation directory the whole path is walked: the same result.
        drop(w);
        let mut w = open_fifo_for_write(&p, Path::new("")).unwrap();
        w.write_all(b"again\n").unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn has_reader_follows_the_read_side_and_is_gone_only_when_removed() {
        let d = alloc_dir("hasreader");
        let p = fifo_path(&d);
        mkfifo(&p);
        let r = reader(&p);
        let w = open_fifo_for_write(&p, &d).unwrap();
        assert!(has_reader(&w).unwrap());
        drop(r);
        assert!(!has_reader(&w).unwrap(), "the reader closed");
        let _r2 = reader(&p);
        assert!(has_reader(&w).unwrap(), "a new reader");
        assert!(!is_gone(&d) && !is_gone(Path::new("")));
        let _ = std::fs::remove_dir_all(&d);
        assert!(is_gone(&d));
    }

    #[test]
    fn no_reader_or_no_fifo_yet_is_not_ready() {
        let d = alloc_dir("noreader");
        let p = fifo_path(&d);
        let e = open_fifo_for_write(&p, &d).unwrap_err();
        assert!(matches!(e, FsError::Missing { .. }) && e.is_not_ready(), "{e}");
        let e = open_fifo_for_write(&d.join("alloc/nope/fifo"), &d).unwrap_err();
        assert!(e.is_not_ready(), "a missing directory is not ready yet: {e}");
        mkfifo(&p);
        let e = open_fifo_for_write(&p, &d).unwrap_err();
        assert!(matches!(e, FsError::NoReader { .. }) && e.is_not_ready(), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_symlink_at_the_fifo_name_is_refused_and_its_target_unchanged() {
        let d = alloc_dir("symlink");
        let target = d.join("host-file");
        std::fs::write(&target, "precious\n").unwrap();
        let p = fifo_path(&d);
        symlink(&target, &p).unwrap();
        for root in [d.as_path(), Path::new("")] {
            let e = open_fifo_for_write(&p, root).unwrap_err();
            match &e {
                FsError::WrongKind { at, found, expected } => {
                    assert_eq!((at, *found, *expected), (&p, Kind::Symlink, Kind::Fifo));
                }
                other => panic!("expected a refusal, got {other}"),
            }
            assert!(!e.is_not_ready());
            assert!(e.to_string().contains("is a symbolic link, not a FIFO"), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
        // A link to a FIFO is refused as well: links are never followed.
        let real = d.join("real.fifo");
        mkfifo(&real);
        let _r = reader(&real);
        std::fs::remove_file(&p).unwrap();
        symlink(&real, &p).unwrap();
        let e = open_fifo_for_write(&p, &d).unwrap_err();
        assert!(
            matches!(
                e,
                FsError::WrongKind {
                    found: Kind::Symlink,
                    ..
                }
            ),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_regular_file_or_a_device_at_the_fifo_name_is_refused_and_not_opened() {
        let d = alloc_dir("regular");
        let p = fifo_path(&d);
        std::fs::write(&p, "content\n").unwrap();
        let e = open_fifo_for_write(&p, &d).unwrap_err();
        assert!(
            matches!(
                e,
                FsError::WrongKind {
                    found: Kind::RegularFile,
                    expected: Kind::Fifo,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "content\n");
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        let e = open_fifo_for_write(&p, &d).unwrap_err();
        assert!(
            matches!(
                e,
                FsError::WrongKind {
                    found: Kind::Directory,
                    ..
                }
            ),
            "{e}"
        );
        // A device is only looked at (O_PATH), never opened.
        let e = open_fifo_for_write(Path::new("/dev/null"), Path::new("")).unwrap_err();
        assert!(
            matches!(
                e,
                FsError::WrongKind {
                    found: Kind::CharDevice,
                    ..
                }
            ),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_symlinked_directory_on_the_way_is_refused() {
        let d = alloc_dir("dirlink");
        // `logs` replaced by a link to a directory holding a real FIFO of the task's name.
        let elsewhere = d.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let real = elsewhere.join(".web.stdout.fifo");
        mkfifo(&real);
        let _r = reader(&real);
        std::fs::remove_dir(d.join("alloc/logs")).unwrap();
        symlink(&elsewhere, d.join("alloc/logs")).unwrap();
        let p = fifo_path(&d);
        for root in [d.as_path(), Path::new("")] {
            let e = open_fifo_for_write(&p, root).unwrap_err();
            match &e {
                FsError::WrongKind { at, found, expected } => {
                    assert_eq!(
                        (at, *found, *expected),
                        (&d.join("alloc/logs"), Kind::Symlink, Kind::Directory)
                    );
                }
                other => panic!("expected a refusal, got {other}"),
            }
        }
        // A component that is a file (ENOTDIR otherwise) is refused too.
        std::fs::remove_file(d.join("alloc/logs")).unwrap();
        std::fs::write(d.join("alloc/logs"), "").unwrap();
        let e = open_fifo_for_write(&p, &d).unwrap_err();
        assert!(
            matches!(
                e,
                FsError::WrongKind {
                    found: Kind::RegularFile,
                    ..
                }
            ),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_trusted_allocation_directory_may_be_reached_through_a_link() {
        let d = alloc_dir("trusted");
        let link = std::env::temp_dir().join(format!("alloc-fs-trusted-link-{}", std::process::id()));
        let _ = std::fs::remove_file(&link);
        symlink(&d, &link).unwrap();
        let p = link.join("alloc/logs/.web.stdout.fifo");
        mkfifo(&p);
        let _r = reader(&p);
        assert!(
            open_fifo_for_write(&p, &link).is_ok(),
            "the operator's links are followed"
        );
        // Walked from `/`, the same link is refused.
        let e = open_fifo_for_write(&p, Path::new("")).unwrap_err();
        assert!(
            matches!(
                e,
                FsError::WrongKind {
                    found: Kind::Symlink,
                    ..
                }
            ),
            "{e}"
        );
        let _ = std::fs::remove_file(&link);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn relative_or_dotdot_paths_are_refused() {
        for p in ["relative/fifo", "/tmp/../etc/crontab", "/"] {
            let e = open_fifo_for_write(Path::new(p), Path::new("")).unwrap_err();
            assert!(matches!(e, FsError::BadPath { .. }), "{p}: {e}");
        }
        let d = alloc_dir("dotdot");
        let e = open_fifo_for_write(&d.join("alloc/logs/../../web/x"), &d).unwrap_err();
        assert!(matches!(e, FsError::BadPath { .. }), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bounded_reads_refuse_links_devices_and_large_files() {
        let d = alloc_dir("read");
        let dir = task_dir(&d, "web").unwrap();
        std::fs::write(d.join("web/pos.json"), "{}").unwrap();
        assert_eq!(dir.read_bounded(OsStr::new("pos.json"), 16).unwrap(), b"{}");
        std::fs::write(d.join("web/big.json"), vec![b'x'; 100]).unwrap();
        let e = dir.read_bounded(OsStr::new("big.json"), 99).unwrap_err();
        assert!(matches!(e, FsError::TooLarge { cap: 99, .. }), "{e}");
        assert_eq!(dir.read_bounded(OsStr::new("big.json"), 100).unwrap().len(), 100);
        // A position file linked to /dev/zero is not read (it would never end).
        symlink("/dev/zero", d.join("web/zero.json")).unwrap();
        let e = dir.read_bounded(OsStr::new("zero.json"), 1 << 20).unwrap_err();
        assert!(
            matches!(
                e,
                FsError::WrongKind {
                    found: Kind::Symlink,
                    ..
                }
            ),
            "{e}"
        );
        // /dev/zero itself is a device: looked at, not read.
        let dev = Dir::trusted(Path::new("/dev")).unwrap();
        let e = dev.read_bounded(OsStr::new("zero"), 1 << 20).unwrap_err();
        assert!(
            matches!(
                e,
                FsError::WrongKind {
                    found: Kind::CharDevice,
                    ..
                }
            ),
            "{e}"
        );
        let e = dir.read_bounded(OsStr::new("missing.json"), 16).unwrap_err();
        assert!(matches!(e, FsError::Missing { .. }), "{e}");
        let e = dir.read_bounded(OsStr::new("../web/pos.json"), 16).unwrap_err();
        assert!(matches!(e, FsError::BadPath { .. }), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn replace_file_never_writes_through_a_link() {
        let d = alloc_dir("replace");
        let dir = task_dir(&d, "web").unwrap();
        let victim = d.join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        // Links planted at both the file and its temporary name.
        symlink(&victim, d.join("web/pos.json")).unwrap();
        symlink(&victim, d.join("web/pos.json.tmp")).unwrap();
        dir.replace_file(OsStr::new("pos.json"), b"{\"v\":1}").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        let meta = std::fs::symlink_metadata(d.join("web/pos.json")).unwrap();
        assert!(meta.is_file(), "the link was replaced by a file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(std::fs::symlink_metadata(d.join("web/pos.json.tmp")).is_err());
        assert_eq!(dir.read_bounded(OsStr::new("pos.json"), 64).unwrap(), b"{\"v\":1}");
        dir.replace_file(OsStr::new("pos.json"), b"{\"v\":2}").unwrap();
        assert_eq!(std::fs::read(d.join("web/pos.json")).unwrap(), b"{\"v\":2}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn task_dir_wants_a_plain_name_and_a_real_directory() {
        let d = alloc_dir("taskdir");
        assert_eq!(task_dir(&d, "web").unwrap().path(), d.join("web"));
        for bad in ["", ".", "..", "a/b", "/web"] {
            assert!(matches!(task_dir(&d, bad), Err(FsError::BadPath { .. })), "{bad:?}");
        }
        std::fs::remove_dir(d.join("web")).unwrap();
        symlink(d.join("alloc"), d.join("web")).unwrap();
        assert!(matches!(
            task_dir(&d, "web"),
            Err(FsError::WrongKind {
                found: Kind::Symlink,
                ..
            })
        ));
        assert!(matches!(task_dir(&d.join("nope"), "web"), Err(FsError::Missing { .. })));
        let _ = std::fs::remove_dir_all(&d);
    }
}
