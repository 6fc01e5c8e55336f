//! Tar archives the CLI makes (image build contexts, files copied into containers), with
//! reproducible metadata: mtime 0 and the owner and mode given, so equal inputs give equal bytes.

/// A header for one entry: `kind`, permission bits `mode`, owned by `uid` (user and group).
pub fn header(kind: tar::EntryType, mode: u32, uid: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(uid);
    h.set_mtime(0);
    h.set_size(size);
    h
}

/// An archive holding one regular file `name` with `contents`.
pub fn single_file(name: &str, contents: &[u8], mode: u32, owner: u64) -> std::io::Result<Vec<u8>> {
    let mut archive = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Regular, mode, owner, contents.len() as u64);
    archive.append_data(&mut h, name, contents)?;
    archive.into_inner()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_single_file_archive_is_reproducible_and_keeps_owner_and_mode() {
        let a = super::single_file("token", b"secret", 0o400, 10001).unwrap();
        assert_eq!(
            a,
            super::single_file("token", b"secret", 0o400, 10001).unwrap()
        );
        let mut archive = tar::Archive::new(a.as_slice());
        let mut entries = archive.entries().unwrap();
        let entry = entries.next().unwrap().unwrap();
        let h = entry.header();
        assert_eq!(h.mode().unwrap(), 0o400);
        assert_eq!(
            (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
            (10001, 10001, 0)
        );
        assert_eq!(entry.path().unwrap().to_str(), Some("token"));
        assert!(entries.next().is_none());
    }
}
