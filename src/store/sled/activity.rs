//! When each session was last used (`[tokens] idle_timeout`): written in batches by the
//! sweep, read once at start-up, never on the request path.

use super::{be_u64, SledStore};
use crate::store::Result;

impl SledStore {
    /// Stores the last-used times (Unix seconds) of some sessions, in one batch.
    pub(super) fn put_activity(&self, times: &[(String, u64)]) -> Result<()> {
        if times.is_empty() {
            return Ok(());
        }
        // A time never moves back: the latest of a batch, and of what is stored, is kept.
        for (sid, last) in times {
            self.activity.fetch_and_update(sid.as_bytes(), |old| {
                let kept = old.map(be_u64).unwrap_or(0).max(*last);
                Some(kept.to_be_bytes().to_vec())
            })?;
        }
        Ok(())
    }

    /// Every session's stored last-used time.
    pub(super) fn activity(&self) -> Result<Vec<(String, u64)>> {
        self.activity
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((String::from_utf8_lossy(&k).into_owned(), be_u64(&v)))
            })
            .collect()
    }

    /// Forgets a session's last-used time (it has ended).
    pub(super) fn remove_activity(&self, sid: &str) -> Result<()> {
        self.activity.remove(sid.as_bytes())?;
        Ok(())
    }
}
