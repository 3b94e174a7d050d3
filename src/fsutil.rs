//! Small file-system helpers shared by the modules that keep files of their own.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `bytes` to `path` so that a reader sees the old content or the new, never half:
/// a temporary file in the same directory is written, synced to disk, given `mode` (when
/// set; otherwise the usual `0666` less the umask, as [`std::fs::write`] would) and renamed
/// over `path`. The directory must exist.
///
/// # Errors
///
/// Any I/O error creating, writing, syncing or renaming; the temporary file is removed
/// then.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or(path.as_os_str());
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode.unwrap_or(0o666)))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    if let Some(mode) = mode {
        // Creation applied the umask; the mode asked for is meant exactly.
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The last `lines` lines of what was written to `file` (a command's output log), reading at
/// most its last 64 KiB; empty when it cannot be read.
pub fn tail_lines(mut file: std::fs::File, lines: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL_BYTES: u64 = 64 * 1024;
    let mut read = || -> std::io::Result<String> {
        let len = file.seek(SeekFrom::End(0))?;
        file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    let text = read().unwrap_or_default();
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn replaces_the_file_whole_with_the_mode_asked_for_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        write_atomic(&path, b"first", None).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let default_mode = mode_of(&path);
        assert_eq!(default_mode & 0o600, 0o600, "{default_mode:o}");

        write_atomic(&path, b"second, longer", Some(0o600)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        assert_eq!(mode_of(&path), 0o600);
        write_atomic(&path, b"third", Some(0o640)).unwrap();
        assert_eq!(mode_of(&path), 0o640);

        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("config.yaml")]);
    }

    #[test]
    fn failures_are_errors_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(&dir.path().join("no/such/file"), b"x", None).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);

        // A file cannot be renamed over a non-empty directory.
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/x"), b"").unwrap();
        assert!(write_atomic(&dir.path().join("sub"), b"new", None).is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("sub")]);
    }
}
