//! Passwords: argon2id hashing on dedicated lower-priority threads behind a bounded
//! queue, so a login flood slows logins (and is shed with 503) instead of stalling
//! proxying or exhausting memory; and the password policy of `[password]`.

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::oneshot;

pub use super::password_policy::{broken_rules, checked_rules, COMMON_RULE, MAX_PASSWORD};
use crate::config::{default_hash_concurrency, PasswordPolicy};

/// OWASP's argon2id minimum: m = 19 MiB, t = 2, p = 1.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Verified against when the email is unknown, so that case costs the same as a wrong
/// password: an argon2id hash with exactly the parameters of [`argon2`] (a test checks
/// that they agree). It is a constant rather than computed at start-up, which would
/// cost a hash and leave its 19 MiB with the allocator for nothing. Its verification
/// never lets anyone in: the answer for an unknown email is false whatever it says.
const DUMMY_PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$8BH/9YEosrqpGsgzxpurDA$b894YTT6Wuo7iUMrFZwGWgEIPP4I/WBhWbBcQHRWr2o";

/// How long a password job may wait in the queue; one that waited longer is answered
/// [`Busy`] without being hashed (its client has most likely given up).
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(3);

/// Jobs that may wait for a hashing thread, per thread. Beyond that the answer is
/// [`Busy`] at once.
const QUEUE_PER_SLOT: usize = 64;

/// The niceness of the hashing threads (Linux: 0 is normal, 19 the lowest). At 10 the
/// scheduler gives a busy hashing thread about a tenth of the time of a busy proxying
/// thread, so a login flood slows logins rather than proxying; with nothing else to do
/// the hashing threads still get whole cores.
const HASH_NICENESS: u8 = 10;

/// The hashing threads are all busy and the queue is full (or a job waited too long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// What a hashing thread is asked to do.
enum Work {
    Hash(String),
    Verify {
        password: String,
        phc: String,
    },
    /// The policy check, common-password estimate included (it can take milliseconds).
    Check {
        policy: PasswordPolicy,
        password: String,
        inputs: Vec<String>,
    },
}

/// A hashing thread's answer: [`Outcome::Busy`] when the job waited too long.
enum Outcome {
    Hash(Option<String>),
    Verify(bool),
    Rules(Vec<String>),
    Busy,
}

/// One job in the queue, with when it was queued and where the answer goes.
struct Job {
    work: Work,
    queued: Instant,
    reply: oneshot::Sender<Outcome>,
}

/// Hashes and verifies passwords on a few dedicated threads (one per core by default)
/// that run below the priority of the connection workers. Jobs wait in a bounded
/// queue; a full queue answers [`Busy`] at once, and a job whose requester has gone or
/// that waited more than `MAX_QUEUE_WAIT` (3 s) is dropped without hashing. argon2's
/// 19 MiB per hash thus exists at most once per thread.
#[derive(Clone)]
pub struct Hasher {
    jobs: mpsc::SyncSender<Job>,
}

impl Hasher {
    /// A pool of [`default_hash_concurrency`] hashing threads (one per core).
    pub fn new() -> Self {
        Self::with_concurrency(default_hash_concurrency())
    }

    /// A pool of `slots` hashing threads (at least one). The threads end when the last
    /// clone of the `Hasher` is dropped.
    pub fn with_concurrency(slots: usize) -> Self {
        Self::with_limits(slots, QUEUE_PER_SLOT, MAX_QUEUE_WAIT)
    }

    fn with_limits(slots: usize, queue_per_slot: usize, max_wait: Duration) -> Self {
        let slots = slots.max(1);
        let (jobs, queue) = mpsc::sync_channel::<Job>(slots * queue_per_slot);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..slots {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("portcullis-hash-{i}"))
                .spawn(move || hash_thread(&queue, max_wait));
            if let Err(e) = spawned {
                // Fewer threads than asked; with none at all every job is answered Busy.
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        Self { jobs }
    }

    async fn run(&self, work: Work) -> Result<Outcome, Busy> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            work,
            queued: Instant::now(),
            reply,
        };
        self.jobs.try_send(job).map_err(|_| Busy)?;
        match answer.await {
            Ok(Outcome::Busy) | Err(_) => Err(Busy),
            Ok(outcome) => Ok(outcome),
        }
    }

    /// An argon2id PHC string for `password` (`Ok(None)` if hashing failed).
    pub async fn hash(&self, password: String) -> Result<Option<String>, Busy> {
        match self.run(Work::Hash(password)).await? {
            Outcome::Hash(h) => Ok(h),
            Outcome::Verify(_) | Outcome::Rules(_) | Outcome::Busy => Ok(None),
        }
    }

    /// Whether `password` matches `phc`; with `None`, verifies against the dummy hash
    /// (and answers false) so an unknown account costs the same as a wrong password.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, Busy> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| DUMMY_PHC.to_owned());
        let ok = matches!(self.run(Work::Verify { password, phc }).await?, Outcome::Verify(true));
        Ok(ok && known)
    }

    /// Every rule of `policy` that `password` breaks ([`broken_rules`] and, with
    /// `reject_common`, [`COMMON_RULE`]), checked on a hashing thread. `inputs[0]` is the
    /// account's email; the others (its name) are words the password must not lean on.
    pub async fn check(
        &self,
        policy: &PasswordPolicy,
        password: String,
        inputs: Vec<String>,
    ) -> Result<Vec<String>, Busy> {
        let policy = policy.clone();
        match self
            .run(Work::Check {
                policy,
                password,
                inputs,
            })
            .await?
        {
            Outcome::Rules(rules) => Ok(rules),
            Outcome::Hash(_) | Outcome::Verify(_) | Outcome::Busy => Err(Busy),
        }
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

/// A hashing thread: takes jobs until every [`Hasher`] is gone.
fn hash_thread(queue: &Mutex<mpsc::Receiver<Job>>, max_wait: Duration) {
    lower_priority();
    loop {
        // One thread at a time waits on the queue; the lock is released before hashing.
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return; // every Hasher is gone
        };
        if job.reply.is_closed() {
            continue;
        }
        let outcome = if job.queued.elapsed() > max_wait {
            Outcome::Busy
        } else {
            match job.work {
                Work::Hash(password) => Outcome::Hash(hash_now(&password)),
                Work::Verify { password, phc } => Outcome::Verify(verify_now(&password, &phc)),
                Work::Check {
                    policy,
                    password,
                    inputs,
                } => Outcome::Rules(checked_rules(&policy, &password, &inputs)),
            }
        };
        let _ = job.reply.send(outcome);
    }
}

/// Lowers the calling thread's scheduling priority to [`HASH_NICENESS`]; where that is
/// not possible the thread keeps the normal priority.
fn lower_priority() {
    use thread_priority::{ThreadPriority, ThreadPriorityValue};
    // The crate maps 0..=99 linearly onto niceness 19..=-20 (rounding down); find the
    // value that lands on ours. A test reads the niceness back.
    let niceness = i32::from(HASH_NICENESS);
    let result = (0..=99u8)
        .find(|&p| (39.0 * (1.0 - f32::from(p) / 99.0)) as i32 - 20 == niceness)
        .and_then(|p| ThreadPriorityValue::try_from(p).ok())
        .ok_or(thread_priority::Error::Priority("no value maps to the niceness"))
        .and_then(|v| thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(v)));
    if let Err(e) = result {
        tracing::debug!(error = %e, "hashing threads keep the normal priority");
    }
}

/// An argon2id PHC string for `password`, hashed on the calling thread (a hashing
/// thread's job; `None` if hashing failed).
pub fn hash_now(password: &str) -> Option<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .ok()
        .map(|h| h.to_string())
}

/// Whether `password` matches the PHC string `phc`, checked on the calling thread.
fn verify_now(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    argon2().verify_password(password.as_bytes(), &parsed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The dummy hash costs what a real one does: same algorithm, version and parameters.
    #[test]
    fn dummy_matches_parameters() {
        let dummy = PasswordHash::new(DUMMY_PHC).unwrap();
        let real_phc = hash_now("Some!Passw0rd").unwrap();
        let real = PasswordHash::new(&real_phc).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(dummy.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
        assert!(verify_now("portcullis-dummy-password", DUMMY_PHC));
    }

    // Hashes are argon2id with the OWASP parameters, and verify only the right password.
    #[tokio::test]
    async fn hash_and_verify() {
        let h = Hasher::new();
        let phc = h.hash("S3cret!pass".into()).await.unwrap().unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(h.verify("S3cret!pass".into(), Some(phc.clone())).await, Ok(true));
        assert_eq!(h.verify("wrong".into(), Some(phc)).await, Ok(false));
        assert_eq!(
            h.verify("portcullis-dummy-password".into(), None).await,
            Ok(false),
            "the dummy hash logs nobody in"
        );
    }

    // More jobs than the queue holds: the excess is answered Busy at once, every job in
    // the queue is answered, and the hashing threads run below normal priority.
    #[tokio::test(flavor = "multi_thread")]
    async fn full_queue_is_busy() {
        let h = Hasher::with_limits(1, 2, Duration::from_secs(600));
        let jobs: Vec<_> = (0..6)
            .map(|_| {
                let h = h.clone();
                tokio::spawn(async move { h.verify("x".into(), None).await })
            })
            .collect();
        let mut busy = 0;
        for j in jobs {
            match j.await.unwrap() {
                Err(Busy) => busy += 1,
                Ok(ok) => assert!(!ok),
            }
        }
        // Two queued are answered, plus the one running if the thread took the first
        // job off the queue before the last ones arrived; hashing takes far longer
        // than submitting, so no more than that.
        assert!((3..=4).contains(&busy), "{busy} busy");

        // A job that waited longer than allowed is not hashed.
        let expired = Hasher::with_limits(1, 2, Duration::ZERO);
        assert_eq!(expired.verify("x".into(), None).await, Err(Busy));

        #[cfg(target_os = "linux")]
        {
            let mut niced = 0;
            for task in std::fs::read_dir("/proc/self/task").unwrap() {
                let task = task.unwrap().path();
                let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
                if comm.trim() == "portcullis-hash" {
                    // Field 19 of stat is the niceness; fields after the name ")". A
                    // thread another test has just started lowers its priority first
                    // thing: it gets a moment to do so.
                    let nice = || {
                        let stat = std::fs::read_to_string(task.join("stat")).ok()?;
                        let after = &stat[stat.rfind(')')? + 2..];
                        after.split(' ').nth(16)?.parse::<i32>().ok()
                    };
                    let deadline = std::time::Instant::now() + Duration::from_secs(5);
                    let mut seen = nice();
                    while seen.is_some_and(|n| n != i32::from(HASH_NICENESS)) && std::time::Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                        seen = nice();
                    }
                    // `None`: the thread ended meanwhile (its test finished).
                    if let Some(n) = seen {
                        assert_eq!(n, i32::from(HASH_NICENESS));
                        niced += 1;
                    }
                }
            }
            assert!(niced >= 1);
        }
    }
}
