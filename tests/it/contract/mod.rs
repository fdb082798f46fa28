//! Contract tests of the ports: each case is written once, as a function of the adapter, and
//! `contract_suite!` makes one test per case per adapter, named
//! `contract::<port>::<adapter>::<case>`. So `cargo test postgres` runs the PostgreSQL store
//! alone, and a failure names the adapter it failed on.

/// `contract_suite!(Adapter { module => Adapter::Variant, .. }, [case, ..])`: a module per
/// adapter holding a `#[tokio::test]` per case, each calling `case(Adapter::Variant)`.
macro_rules! contract_suite {
    ($adapter_type:ident { $($module:ident => $adapter:expr),+ $(,)? }, $cases:tt) => {
        $( contract_suite!(@adapter $module => $adapter, $cases); )+
    };
    (@adapter $module:ident => $adapter:expr, [$($case:ident),+ $(,)?]) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($adapter).await;
                }
            )+
        }
    };
}

mod bus;
mod limiter;
mod store;
mod timeline;
mod webhooks;
