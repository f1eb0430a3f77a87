//! `--threads`: the core's chunked work (filters in FISTA, the features, the synthesis) and
//! the network's filter batches on several threads.
//!
//! The core fixes how work is cut (chunks of [`sparsemap_core::fista::BLOCKS_PER_CHUNK`]
//! filters, each with its own forward-pass sum, added in chunk order) and [`Threads`] only
//! decides which thread runs which chunk, so every thread count gives the same bits.
//! Threads are scoped to one call (`std::thread::scope`): nothing outlives a slice, and a
//! call costs one spawn per extra thread (tens of microseconds against an iteration of
//! tens of milliseconds).

use crate::limits::try_filled;
use num_complex::Complex;
use sparsemap_core::fista::{Executor, Serial, WorkerBuffers};
use sparsemap_core::Real;

/// Most threads `--threads` accepts: beyond 64 chunks (K = 256) there is nothing to split.
pub const MAX_THREADS: usize = 64;

/// The cores this process may use (`std::thread::available_parallelism`, which honours
/// the CPU affinity mask and cgroup quotas), 1 if unknown.
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs items on up to `count` threads: the calling thread and `count - 1` scoped ones,
/// each taking a contiguous run of items.
#[derive(Debug, Clone, Copy)]
pub struct Threads {
    count: usize,
}

impl Threads {
    /// `count` clamped to `1..=MAX_THREADS`.
    pub fn new(count: usize) -> Self {
        Self {
            count: count.clamp(1, MAX_THREADS),
        }
    }

    pub fn count(self) -> usize {
        self.count
    }
}

impl Executor for Threads {
    fn for_each<I: Send, W: Send>(
        &self,
        items: &mut [I],
        workers: &mut [W],
        work: &(dyn Fn(&mut I, &mut W) + Sync),
    ) {
        let groups = self.count.min(workers.len()).min(items.len());
        if groups <= 1 {
            return Serial.for_each(items, workers, work);
        }
        let per_group = items.len().div_ceil(groups);
        std::thread::scope(|scope| {
            let mut groups = items.chunks_mut(per_group).zip(workers.iter_mut());
            let first = groups.next();
            for (group, worker) in groups {
                scope.spawn(move || group.iter_mut().for_each(|item| work(item, worker)));
            }
            if let Some((group, worker)) = first {
                group.iter_mut().for_each(|item| work(item, worker));
            }
        });
    }
}

/// The buffers of one solver thread: a block and the operator's scratch.
struct WorkerStorage<T> {
    block: Vec<Complex<T>>,
    scratch: Vec<Complex<T>>,
}

/// One set of worker buffers per thread, allocated once per grid.
pub struct WorkerPool<T> {
    threads: Threads,
    storage: Vec<WorkerStorage<T>>,
}

impl<T: Real> WorkerPool<T> {
    /// Buffers for `threads` workers of `block_len` and `scratch_len` complex elements
    /// (none for one thread: the serial solve uses the workspace's own).
    pub fn new(threads: Threads, block_len: usize, scratch_len: usize) -> anyhow::Result<Self> {
        let workers = if threads.count() > 1 {
            threads.count()
        } else {
            0
        };
        let storage = (0..workers)
            .map(|_| {
                Ok(WorkerStorage {
                    block: try_filled(block_len, Complex::default())?,
                    scratch: try_filled(scratch_len, Complex::default())?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { threads, storage })
    }

    pub fn threads(&self) -> Threads {
        self.threads
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.storage
            .iter()
            .map(|w| (w.block.len() + w.scratch.len()) * core::mem::size_of::<Complex<T>>())
            .sum()
    }

    /// The workers' buffers as the core takes them (empty for one thread).
    pub fn workers(&mut self) -> Vec<WorkerBuffers<'_, T>> {
        self.storage
            .iter_mut()
            .map(|w| WorkerBuffers {
                block: &mut w.block,
                scratch: &mut w.scratch,
            })
            .collect()
    }
}
