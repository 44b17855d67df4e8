//! The first of several futures to succeed: each asked at once, the first
//! `Ok` taken and the others dropped (so a few that trickle hold back no
//! honest one behind them). Used where a chunk list is asked of many
//! places at once (`app::fetch`, `mirror`).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// A future [`first_ok`] races.
pub(crate) type Attempt<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Polls every one of `attempts` until one gives `Ok` (returned, the
/// rest dropped) or all gave `Err`. `Err`: each failure with its attempt's
/// place in `attempts`, in the order they failed.
pub(crate) async fn first_ok<T>(
    mut attempts: Vec<Attempt<'_, T>>,
) -> Result<T, Vec<(usize, String)>> {
    let mut places: Vec<usize> = (0..attempts.len()).collect();
    let mut failed = Vec::new();
    std::future::poll_fn(|cx| {
        let mut at = 0;
        while at < attempts.len() {
            match attempts[at].as_mut().poll(cx) {
                Poll::Ready(Ok(found)) => return Poll::Ready(Some(found)),
                Poll::Ready(Err(error)) => {
                    failed.push((places[at], error));
                    drop(attempts.swap_remove(at));
                    places.swap_remove(at);
                }
                Poll::Pending => at += 1,
            }
        }
        match attempts.is_empty() {
            true => Poll::Ready(None),
            false => Poll::Pending,
        }
    })
    .await
    .ok_or(failed)
}
