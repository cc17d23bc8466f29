//! [`GroupCommit`]: how a store batches concurrent appends into one transaction.

/// How a store batches concurrent appends into one transaction. On by default; see the
/// [module docs](crate::group_commit).
///
/// ```
/// use fluvius_sql::GroupCommit;
/// let batched = GroupCommit::default().max_batch(64);
/// assert_eq!(batched.max_appends(), 64);
/// assert!(!GroupCommit::off().is_on());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommit {
    pub(super) max_batch: usize,
    pub(super) max_batch_events: usize,
    writers: Option<usize>,
}

impl GroupCommit {
    /// The default batch bound: at most this many appends per transaction.
    pub const DEFAULT_MAX_BATCH: usize = 256;
    /// The default bound on the events of one batch (a single larger append still goes
    /// through, alone).
    pub const DEFAULT_MAX_BATCH_EVENTS: usize = 10_000;
    /// Writers of a PostgreSQL store, unless set with [`writers`](Self::writers). Two: fewer
    /// writers make larger batches and fewer transactions, more let the server commit in
    /// parallel; BENCHMARKS.md has the measurements. A server with more cores may want more.
    pub const DEFAULT_POSTGRES_WRITERS: usize = 2;

    /// No batching: every append is its own transaction, written by the calling task, and
    /// every stream read its own query.
    pub const fn off() -> Self {
        Self {
            max_batch: 1,
            max_batch_events: Self::DEFAULT_MAX_BATCH_EVENTS,
            writers: None,
        }
    }

    /// At most `max` appends per transaction (at least 1; 1 turns group commit off).
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max.max(1);
        self
    }

    /// At most `max` events per transaction, counting whole appends: an append that would
    /// cross the bound waits for the next batch (an append larger than the bound goes alone).
    pub fn max_batch_events(mut self, max: usize) -> Self {
        self.max_batch_events = max.max(1);
        self
    }

    /// How many writers drain the queue, each writing its own batch in its own transaction
    /// (at least 1). PostgreSQL runs several by default
    /// ([`DEFAULT_POSTGRES_WRITERS`](Self::DEFAULT_POSTGRES_WRITERS)): the server commits
    /// concurrent transactions in parallel and flushes their WAL together, so one writer
    /// alone would serialize its round trips. SQLite always uses one (it has one write lock).
    pub fn writers(mut self, writers: usize) -> Self {
        self.writers = Some(writers.max(1));
        self
    }

    /// The number of writers set with [`writers`](Self::writers), or `default`.
    pub(crate) fn writers_or(&self, default: usize) -> usize {
        self.writers.unwrap_or(default)
    }

    /// The bound on appends per transaction.
    pub fn max_appends(&self) -> usize {
        self.max_batch
    }

    /// Whether appends are batched (a bound above 1).
    pub fn is_on(&self) -> bool {
        self.max_batch > 1
    }
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            max_batch: Self::DEFAULT_MAX_BATCH,
            max_batch_events: Self::DEFAULT_MAX_BATCH_EVENTS,
            writers: None,
        }
    }
}
