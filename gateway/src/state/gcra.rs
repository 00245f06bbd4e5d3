//! The generic cell rate algorithm: a token bucket kept as one number per key, the
//! theoretical arrival time (TAT) of the next request. Pure: `now` is an argument. The
//! Redis store runs the same arithmetic in a Lua script ([`super::redis`]).

/// A bucket's shape: one request per `interval_ms` on average, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Milliseconds between requests at the sustained rate (at least 1).
    pub interval_ms: i64,
    /// How far the TAT may run ahead of now: `interval * (burst - 1)`.
    pub tolerance_ms: i64,
}

impl Shape {
    /// `requests` per `per`, with bursts of up to `burst`.
    pub fn new(per: std::time::Duration, requests: u32, burst: u32) -> Shape {
        let per_ms = i64::try_from(per.as_millis()).unwrap_or(i64::MAX);
        let interval_ms = (per_ms / i64::from(requests.max(1))).max(1);
        let tolerance_ms = interval_ms.saturating_mul(i64::from(burst.max(1)) - 1);
        Shape {
            interval_ms,
            tolerance_ms,
        }
    }
}

/// The answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed; the new TAT to store (when consuming).
    Allow {
        /// The TAT after this request.
        new_tat: i64,
    },
    /// Over the limit: retry after this many milliseconds.
    Limited {
        /// When the next request would be allowed, from now.
        retry_after_ms: i64,
    },
}

/// Decides one request at `now` (ms) against the stored TAT (`None`: a full bucket).
pub fn decide(tat: Option<i64>, now: i64, shape: Shape) -> Verdict {
    let tat = tat.map_or(now, |t| t.max(now));
    let ahead = tat.saturating_sub(now);
    if ahead > shape.tolerance_ms {
        Verdict::Limited {
            retry_after_ms: ahead - shape.tolerance_ms,
        }
    } else {
        Verdict::Allow {
            new_tat: tat.saturating_add(shape.interval_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use std::time::Duration;

    fn run(shape: Shape, times: &[i64]) -> Vec<bool> {
        let mut tat = None;
        times
            .iter()
            .map(|&now| match decide(tat, now, shape) {
                Verdict::Allow { new_tat } => {
                    tat = Some(new_tat);
                    true
                }
                Verdict::Limited { .. } => false,
            })
            .collect()
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        // 10 per second, bursts of 3: three at once, then one every 100 ms.
        let shape = Shape::new(Duration::from_secs(1), 10, 3);
        assert_eq!(
            shape,
            Shape {
                interval_ms: 100,
                tolerance_ms: 200
            }
        );
        assert_eq!(run(shape, &[0, 0, 0, 0]), [true, true, true, false]);
        assert_eq!(
            run(shape, &[0, 0, 0, 99, 100, 150, 200]),
            [true, true, true, false, true, false, true]
        );
    }

    #[test]
    fn retry_after_is_when_the_next_one_fits() {
        let shape = Shape::new(Duration::from_secs(60), 1, 1);
        let Verdict::Allow { new_tat } = decide(None, 1_000, shape) else {
            panic!()
        };
        assert_eq!(
            decide(Some(new_tat), 31_000, shape),
            Verdict::Limited {
                retry_after_ms: 30_000
            }
        );
        assert!(matches!(
            decide(Some(new_tat), 61_000, shape),
            Verdict::Allow { .. }
        ));
    }

    #[test]
    fn an_old_tat_is_a_full_bucket() {
        let shape = Shape::new(Duration::from_secs(1), 1, 2);
        assert_eq!(decide(Some(0), 10_000, shape), decide(None, 10_000, shape));
    }
}
