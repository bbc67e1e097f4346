//! Open options with documented defaults and a `validate()` step.

use super::error::{Error, Result};

/// How a commit reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Default. Pages and meta are written together and made durable by one
    /// fdatasync; checksums let open tell a torn commit from a complete one
    /// (docs/format.md, "Commit protocol").
    Single,
    /// bbolt's protocol, kept for comparison: fdatasync the pages, then
    /// write the meta and fdatasync again.
    Double,
    /// No fdatasync at all: for bulk loads that call `Db::sync` at the end.
    /// A crash may lose recent commits (never corrupt older ones).
    None,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Page size in bytes; a power of two from 1 KiB to 32 KiB. Default 4096.
    /// An existing file keeps the page size it was created with.
    pub page_size: usize,
    /// Default `SyncMode::Single`.
    pub sync: SyncMode,
    /// Size a new file starts with. Default 1 MiB.
    pub initial_size_bytes: u64,
    /// The file grows by at least this much at a time (and by at least 1/8
    /// of its size, up to `grow_step_max_bytes`). Default 1 MiB.
    pub grow_step_min_bytes: u64,
    /// Default 256 MiB.
    pub grow_step_max_bytes: u64,
    /// Every this many commits, a commit also writes its commit point to a
    /// fixed meta page (a checkpoint), so open follows at most this many
    /// commit records and the records before it are freed. Between
    /// checkpoints a commit is one contiguous write. Default 64; at least 1
    /// (1: every commit writes a meta page too).
    pub checkpoint_interval_commits: u32,
    /// Free space, in percent of the file, up to which a commit writes its
    /// pages only into free extents of at least 16 pages (or the file's
    /// tail); above it, shorter extents are used too (down to 4 pages, and
    /// to single pages 10 points higher). Each extent is a separate write
    /// for the disk, so this trades file size against write requests per
    /// commit: under random updates the file settles near
    /// `100 / (100 − p)` times the data it holds. Default 50 (about twice
    /// the data); 1 to 90.
    pub free_space_target_percent: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            page_size: 4096,
            sync: SyncMode::Single,
            initial_size_bytes: 1 << 20,
            grow_step_min_bytes: 1 << 20,
            grow_step_max_bytes: 256 << 20,
            checkpoint_interval_commits: 64,
            free_space_target_percent: 50,
        }
    }
}

pub const MIN_PAGE_SIZE: usize = 1024;
pub const MAX_PAGE_SIZE: usize = 32768;

pub fn valid_page_size(page_size: usize) -> bool {
    page_size.is_power_of_two() && (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size)
}

impl Options {
    pub fn validate(&self) -> Result<()> {
        if !valid_page_size(self.page_size) {
            return Err(Error::InvalidOptions(format!(
                "page_size {} is not a power of two in 1024..=32768",
                self.page_size
            )));
        }
        if self.grow_step_min_bytes == 0 || self.grow_step_min_bytes > self.grow_step_max_bytes {
            return Err(Error::InvalidOptions(format!(
                "grow steps {}..{} are empty or inverted",
                self.grow_step_min_bytes, self.grow_step_max_bytes
            )));
        }
        if !(1..=90).contains(&self.free_space_target_percent) {
            return Err(Error::InvalidOptions(format!(
                "free_space_target_percent {} is not in 1..=90",
                self.free_space_target_percent
            )));
        }
        if self.checkpoint_interval_commits == 0 {
            return Err(Error::InvalidOptions(
                "checkpoint_interval_commits must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Longest key (and bucket name): every leaf or branch element then takes
    /// at most a quarter of a page, so any overfull node can be split.
    pub fn max_key_len(&self) -> usize {
        max_key_len(self.page_size)
    }
}

pub fn max_key_len(page_size: usize) -> usize {
    page_size / 4 - 64
}

/// Longest value: overflow spans are addressed with a u32 length.
pub const MAX_VALUE_LEN: usize = (1 << 31) - 1;

/// Values whose leaf element would exceed a quarter page go to overflow pages.
pub fn inline_fits(page_size: usize, key_len: usize, val_len: usize) -> bool {
    super::node::LEAF_ELEM_HEADER + super::node::SLOT_LEN + key_len + val_len <= page_size / 4
}
