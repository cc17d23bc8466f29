// A LogStore wrapper that forwards everything but `load_snapshot` (and does not write it) must
// not compile: with a default it would silently load every aggregate without snapshots.
use fluvius_core::{LogStore, MemoryLogStore};

struct Wrapper(MemoryLogStore);

impl LogStore for Wrapper {
    fluvius_core::forward_log_store!(|s| &s.0 =>
        backend, append, read_stream, read_log, get_command,
        checkpoints, runs_transactional_handlers, head_position);
}

fn main() {
    let _ = Wrapper(MemoryLogStore::new());
}
