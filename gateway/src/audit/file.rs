//! The audit file sink: an append-only file of JSON lines with size-based rotation.
//!
//! Lines are gathered in memory and written out when the writer flushes (at the end
//! of each batch) or when the buffer grows past [`BUFFER_BYTES`]. Before a line that
//! would push the live file past `max_bytes`, the file is rotated: `path.(N-1)` ->
//! `path.N`, ..., `path` -> `path.1`, whatever falls past `N = max_files` is deleted,
//! and a fresh `path` is opened. A line longer than `max_bytes` still gets written, to
//! a fresh file of its own.
//!
//! Every function here runs on the audit writer thread. Errors never stop the sink:
//! they are handed to the caller's `report` and the file is reopened at the next write.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Buffered lines are written out once they reach this many bytes, even mid-batch.
const BUFFER_BYTES: usize = 64 * 1024;

/// The live audit file and its rotated predecessors.
pub(crate) struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
    /// The live file; `None` after an error, reopened at the next write.
    file: Option<File>,
    /// Bytes in the live file, including those still in `buf`.
    size: u64,
    /// Lines not yet written to `file`.
    buf: Vec<u8>,
    /// Records in `buf`.
    buffered_records: u64,
    /// Records written to the file since the last [`RotatingFile::flush`].
    flushed_records: u64,
    /// Whether a rotation may be tried; cleared when one fails, so a failing rename is
    /// tried once per batch rather than once per record.
    may_rotate: bool,
}

impl RotatingFile {
    /// Opens (creating or appending to) the live file at `path`.
    pub(crate) fn open(path: &Path, max_bytes: u64, max_files: u32) -> io::Result<RotatingFile> {
        let mut f = RotatingFile {
            path: path.to_path_buf(),
            max_bytes,
            max_files,
            file: None,
            size: 0,
            buf: Vec::with_capacity(BUFFER_BYTES),
            buffered_records: 0,
            flushed_records: 0,
            may_rotate: true,
        };
        f.open_live()?;
        Ok(f)
    }

    /// Opens the live file again if a failed write closed it.
    pub(crate) fn reopen(&mut self) -> io::Result<()> {
        match self.file {
            Some(_) => Ok(()),
            None => self.open_live(),
        }
    }

    /// The live file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line (which ends in `\n`). A line that cannot be written is lost;
    /// the error goes to `report`.
    pub(crate) fn write_line(&mut self, line: &[u8], report: &mut dyn FnMut(io::Error)) {
        if self.file.is_none()
            && let Err(e) = self.open_live()
        {
            report(e);
            return;
        }
        let len = line.len() as u64;
        if self.size > 0 && self.size.saturating_add(len) > self.max_bytes && self.may_rotate {
            self.rotate(report);
            if self.file.is_none() {
                return;
            }
        }
        self.buf.extend_from_slice(line);
        self.size = self.size.saturating_add(len);
        self.buffered_records += 1;
        if self.buf.len() >= BUFFER_BYTES {
            self.write_out(report);
        }
    }

    /// Writes out the buffered lines and returns how many records reached the file
    /// since the last call.
    pub(crate) fn flush(&mut self, report: &mut dyn FnMut(io::Error)) -> u64 {
        self.write_out(report);
        self.may_rotate = true;
        std::mem::take(&mut self.flushed_records)
    }

    /// Writes `buf` to the live file. On error the buffered lines are lost and the file
    /// is closed, to be reopened at the next write.
    fn write_out(&mut self, report: &mut dyn FnMut(io::Error)) {
        if self.buf.is_empty() {
            return;
        }
        let result = match self.file.as_mut() {
            Some(file) => file.write_all(&self.buf).and_then(|()| file.flush()),
            None => Err(io::Error::other("the audit file is not open")),
        };
        self.buf.clear();
        match result {
            Ok(()) => self.flushed_records += std::mem::take(&mut self.buffered_records),
            Err(e) => {
                self.buffered_records = 0;
                self.file = None;
                report(e);
            }
        }
    }

    /// Opens the live file for appending and takes its size. A file whose last line was
    /// cut short (a crash or a failed write) gets a newline first, so the next record
    /// starts a line of its own.
    fn open_live(&mut self) -> io::Result<()> {
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o640);
        }
        let file = options
            .open(&self.path)
            .map_err(|e| with_path(e, "open", &self.path))?;
        let size = file
            .metadata()
            .map_err(|e| with_path(e, "inspect", &self.path))?
            .len();
        self.buf.clear();
        self.buffered_records = 0;
        self.size = size;
        if size > 0 && !ends_with_newline(&self.path)? {
            self.buf.push(b'\n');
            self.size += 1;
        }
        self.file = Some(file);
        Ok(())
    }

    /// Closes the live file, shifts the rotated ones up by one and opens a fresh live
    /// file. Failures are reported; if the live file could not be renamed, writing goes
    /// on into it (over the size limit) rather than losing records.
    fn rotate(&mut self, report: &mut dyn FnMut(io::Error)) {
        self.write_out(report);
        self.file = None;
        let n = self.max_files.max(1);
        // Whatever is at N or beyond (N may have been lowered since the last run) goes.
        let mut k = n;
        loop {
            match std::fs::remove_file(self.numbered(k)) {
                Ok(()) => k = k.saturating_add(1),
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => {
                    report(with_path(e, "remove", &self.numbered(k)));
                    break;
                }
            }
            if k == u32::MAX {
                break;
            }
        }
        for i in (1..n).rev() {
            let (from, to) = (self.numbered(i), self.numbered(i + 1));
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => report(with_path(e, "rename", &from)),
            }
        }
        if let Err(e) = std::fs::rename(&self.path, self.numbered(1))
            && e.kind() != io::ErrorKind::NotFound
        {
            report(with_path(e, "rotate", &self.path));
            self.may_rotate = false;
        }
        if let Err(e) = self.open_live() {
            report(e);
        }
    }

    /// `path.k`.
    fn numbered(&self, k: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{k}"));
        PathBuf::from(name)
    }
}

/// Whether the file at `path` ends in `\n` (read from a separate handle: the live one
/// is append-only).
fn ends_with_newline(path: &Path) -> io::Result<bool> {
    let mut f = File::open(path).map_err(|e| with_path(e, "read", path))?;
    f.seek(SeekFrom::End(-1))
        .map_err(|e| with_path(e, "read", path))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)
        .map_err(|e| with_path(e, "read", path))?;
    Ok(last == [b'\n'])
}

/// The error, with what was being done to which file.
fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("cannot {what} `{}`: {e}", path.display()))
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use crate::audit::tests::TempDir;

    fn collect(errors: &mut Vec<String>) -> impl FnMut(io::Error) + '_ {
        |e| errors.push(e.to_string())
    }

    #[test]
    fn a_line_bigger_than_the_limit_gets_a_fresh_file_of_its_own() {
        let dir = TempDir::new("big-line");
        let path = dir.path().join("audit.log");
        let mut errors = Vec::new();
        let mut f = RotatingFile::open(&path, 100, 3).unwrap();
        f.write_line(b"small\n", &mut collect(&mut errors));
        let big = format!("{}\n", "x".repeat(300));
        f.write_line(big.as_bytes(), &mut collect(&mut errors));
        f.write_line(b"after\n", &mut collect(&mut errors));
        assert_eq!(f.flush(&mut collect(&mut errors)), 3);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("audit.log.1")).unwrap(),
            big
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("audit.log.2")).unwrap(),
            "small\n"
        );
    }

    #[test]
    fn an_existing_file_is_appended_to_and_its_size_counts() {
        let dir = TempDir::new("append");
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "old\n").unwrap();
        let mut errors = Vec::new();
        let mut f = RotatingFile::open(&path, 10, 2).unwrap();
        f.write_line(b"new\n", &mut collect(&mut errors));
        f.flush(&mut collect(&mut errors));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\nnew\n");
        // 8 bytes + 4 would pass 10: rotates.
        f.write_line(b"3rd\n", &mut collect(&mut errors));
        f.flush(&mut collect(&mut errors));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "3rd\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("audit.log.1")).unwrap(),
            "old\nnew\n"
        );
    }

    #[test]
    fn a_cut_short_last_line_is_ended_before_appending() {
        let dir = TempDir::new("cut");
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "{\"partial").unwrap();
        let mut errors = Vec::new();
        let mut f = RotatingFile::open(&path, 4096, 2).unwrap();
        f.write_line(b"{}\n", &mut collect(&mut errors));
        assert_eq!(f.flush(&mut collect(&mut errors)), 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"partial\n{}\n");
    }

    #[test]
    fn files_past_a_lowered_max_files_are_removed() {
        let dir = TempDir::new("lowered");
        let path = dir.path().join("audit.log");
        for k in 1..=5 {
            std::fs::write(dir.path().join(format!("audit.log.{k}")), "x\n").unwrap();
        }
        std::fs::write(&path, "live\n").unwrap();
        let mut errors = Vec::new();
        let mut f = RotatingFile::open(&path, 8, 2).unwrap();
        f.write_line(b"next\n", &mut collect(&mut errors));
        f.flush(&mut collect(&mut errors));
        assert!(errors.is_empty(), "{errors:?}");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["audit.log", "audit.log.1", "audit.log.2"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("audit.log.1")).unwrap(),
            "live\n"
        );
    }

    #[test]
    fn a_vanished_directory_is_reported_and_writing_resumes_when_it_is_back() {
        let dir = TempDir::new("vanish");
        let sub = dir.path().join("logs");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("audit.log");
        let mut errors = Vec::new();
        let mut f = RotatingFile::open(&path, 20, 2).unwrap();
        f.write_line(b"0123456789\n", &mut collect(&mut errors));
        assert_eq!(f.flush(&mut collect(&mut errors)), 1);
        std::fs::remove_dir_all(&sub).unwrap();
        // Needs a rotation, which cannot rename or reopen: reported, the line is lost.
        f.write_line(b"0123456789\n", &mut collect(&mut errors));
        assert_eq!(f.flush(&mut collect(&mut errors)), 0);
        assert!(!errors.is_empty());
        assert!(errors.iter().any(|e| e.contains("audit.log")), "{errors:?}");
        std::fs::create_dir(&sub).unwrap();
        errors.clear();
        f.write_line(b"back\n", &mut collect(&mut errors));
        assert_eq!(f.flush(&mut collect(&mut errors)), 1);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "back\n");
    }
}
