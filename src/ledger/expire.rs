//! `ExpireHolds`: releases pending holds older than their expiry age and purges finished
//! authorizations (and their transaction keys) and transactions older than the retention
//! age, so memory is bounded by the traffic of the retention window.
//!
//! Records are scanned from the oldest. Ids are allocated in `now_s` order, so the scan stops
//! at the first record too young for any age; if the runtime's clock ever stepped back, a
//! record may wait for a later run, never be handled twice.
//!
//! A pass scans at most `EXPIRE_SCAN_MAX` records from the oldest kept one, and, when the
//! shard keeps more, one further stretch of as many, picked by the pass's time: the oldest
//! record can stay for weeks (a lodging hold, a finished one within retention), and a scan
//! from the front alone never reached the holds behind its first stretch. The stretch comes
//! from `now_s` and the state alone, so replay picks the same one.

use super::command::Outcome;
use super::records::{splitmix64, AuthStatus};
use super::state::{ShardState, EXPIRE_SCAN_MAX};

/// Hotel and car-rental merchant categories, whose holds live longer.
pub fn is_lodging_mcc(mcc: u16) -> bool {
    matches!(mcc, 3351..=3999 | 7011 | 7512)
}

impl ShardState {
    fn hold_age_s(&self, mcc: u16) -> i64 {
        if is_lodging_mcc(mcc) {
            self.config.hold_expiry_lodging_s
        } else {
            self.config.hold_expiry_s
        }
    }

    /// Runs one expiry pass at `now_s`.
    pub(crate) fn expire_holds(&mut self, now_s: i64) -> Outcome {
        let c = &self.config;
        let young_s = now_s.saturating_sub(
            c.hold_expiry_s
                .min(c.hold_expiry_lodging_s)
                .min(c.retention_s),
        );
        let len = self.auths.len();
        let mut tally = (0u32, 0u32);
        let reached_young =
            self.expire_stretch(0..len.min(EXPIRE_SCAN_MAX), young_s, now_s, &mut tally);
        let stretches = len.div_ceil(EXPIRE_SCAN_MAX);
        let mut more = !reached_young && stretches > 1;
        if more {
            let pick = splitmix64(now_s as u64) % (stretches as u64 - 1);
            let start = (1 + pick as usize) * EXPIRE_SCAN_MAX;
            let end = (start + EXPIRE_SCAN_MAX).min(len);
            self.expire_stretch(start..end, young_s, now_s, &mut tally);
        }
        let (released, purged) = tally;
        while matches!(self.auths.front(), Some(None)) {
            self.auths.pop_front();
            self.auth_base_seq += 1;
        }
        let before_s = now_s.saturating_sub(self.config.retention_s);
        more |= self.purge_transactions(before_s);
        // Bounded by EARLY_REVERSALS_MAX.
        self.early_reversals.retain(|_, e| e.created_s > before_s);
        Outcome::Expired {
            released,
            purged,
            more,
        }
    }

    /// Expires or purges what is due among slots `range`, counting into `tally` (released,
    /// purged); true if it stopped at a record too young for any age (all later ones are).
    fn expire_stretch(
        &mut self,
        range: std::ops::Range<usize>,
        young_s: i64,
        now_s: i64,
        tally: &mut (u32, u32),
    ) -> bool {
        let retention_s = self.config.retention_s;
        assert!(range.len() <= EXPIRE_SCAN_MAX, "one stretch a pass at most");
        for i in range {
            let Some(a) = self.auths[i].as_ref() else {
                continue;
            };
            if a.created_s > young_s {
                return true;
            }
            let seq = self.auth_base_seq + i as u64;
            if a.status == AuthStatus::Pending {
                if now_s.saturating_sub(a.created_s) >= self.hold_age_s(a.mcc) {
                    let held = a.held_minor;
                    self.release_hold(seq, held);
                    let a = self.auth_mut(seq).expect("scanned above");
                    a.status = AuthStatus::Expired;
                    a.updated_s = now_s;
                    tally.0 += 1;
                }
            } else if now_s.saturating_sub(a.updated_s) >= retention_s {
                self.purge_auth(i);
                tally.1 += 1;
            }
        }
        false
    }

    /// Drops authorization slot `i` and the keys that point to it.
    fn purge_auth(&mut self, i: usize) {
        let seq = self.auth_base_seq + i as u64;
        let a = self.auths[i].take().expect("purge of an empty slot");
        assert_eq!(
            a.held_minor, 0,
            "purge of an authorization that holds funds"
        );
        for e in a.history() {
            if self.keys.get(&e.key).is_some_and(|k| k.auth_seq() == seq) {
                self.keys.remove(&e.key);
            }
        }
    }

    /// Drops transactions created at or before `before_s`, in order, stopping at one whose
    /// authorization is still kept (a capture of an authorization still pending, or still
    /// within its retention, must stay refundable and show under it); true if the scan limit
    /// stopped it.
    fn purge_transactions(&mut self, before_s: i64) -> bool {
        for _ in 0..EXPIRE_SCAN_MAX {
            match self.txns.front() {
                Some(Some(t)) if t.created_s > before_s => return false,
                Some(Some(t))
                    if t.authorization
                        .is_some_and(|id| self.auth(id.seq()).is_some()) =>
                {
                    return false
                }
                Some(_) => {
                    self.txns.pop_front();
                    self.txn_base_seq += 1;
                }
                None => return false,
            }
        }
        true
    }
}
