//! Redis adapters for distributed mode: state that several engine processes must share lives in
//! one Redis server, reached through a `deadpool-redis` pool. Only the concurrency limiter is
//! here; its counts have to be global across processes, while its data is small and expires by
//! itself, which suits Redis better than the store.

pub mod limiter;

pub use limiter::RedisLimiter;
