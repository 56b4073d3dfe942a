//! Credit across HTTP: sinkd grants a client the writes it will accept, so the client sends
//! only what will be admitted. No 429, no retry, no request held on the server.
//!
//! The exchange, in headers (the client side is [`SinkClient`](crate::SinkClient)'s
//! `*_credited` calls):
//!
//! - the client names itself and announces its backlog on a write or on `POST /credit`:
//!   `sinkd-credit-id: 7` (any `u64` the client picks, e.g. at random) and `sinkd-backlog: 40`
//!   (what its waiting writes cost, in the sink's cost unit);
//! - a write that carries the id is admitted on the client's credit when it has enough, without
//!   touching the bucket; without enough credit it goes through admission as any write;
//! - every answer to a request with an id carries a grant:
//!   `sinkd-credit: n=12;per=request;used=1;wait-us=2500`: `n` more credit (tokens taken from
//!   the bucket now and set aside for this client, at most what its backlog asked, and held up to
//!   a burst, or the backlog when that is more, so a write costing more than a burst can gather it), the cost unit (`request` or `event`), whether this write was
//!   admitted on credit (`used`), and, when the grant fell short of the backlog, how long until
//!   it is worth asking again (`wait-us`: until half a burst, or the backlog if smaller, is in
//!   the bucket, after any debt a per-event batch left is paid back; at most 1 s, so a rate
//!   raised meanwhile is seen).
//!   `POST /credit` answers at once, never holds.
//!
//! Guarantees: credit is tokens taken from the same bucket, so the sink's rate holds whatever
//! clients do with it; a client that sends only against its credit is never refused for the
//! rate (it may still be refused while the sink is paused: then its credit is not used). An
//! account unused for 60 s may be forgotten, with its credit, once there are 4,096 of them.

use std::time::Duration;

/// Request header: the client's credit account.
pub const CREDIT_ID: &str = "sinkd-credit-id";
/// Request header: what the client's waiting writes cost, in the sink's unit.
pub const BACKLOG: &str = "sinkd-backlog";
/// Response header: the grant.
pub const CREDIT: &str = "sinkd-credit";

/// What a client asks with a write or a `POST /credit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditAsk {
    /// The client's account.
    pub id: u64,
    /// What its waiting writes cost, in the sink's unit.
    pub backlog: u64,
}

/// A grant, as carried by the `sinkd-credit` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditGrant {
    /// Credit added to the client's account.
    pub granted: u64,
    /// One unit per event (`true`) or per request.
    pub per_event: bool,
    /// Whether the write that carried this answer was admitted on credit.
    pub used: bool,
    /// When the grant fell short: how long until asking again is worth it.
    pub wait: Duration,
}

impl CreditGrant {
    /// The header's value.
    pub fn to_header(&self) -> String {
        format!(
            "n={};per={};used={};wait-us={}",
            self.granted,
            if self.per_event { "event" } else { "request" },
            u8::from(self.used),
            self.wait.as_micros()
        )
    }

    /// Parses the header's value; `None` when it is not one.
    pub fn parse(value: &str) -> Option<CreditGrant> {
        let mut grant = CreditGrant {
            granted: 0,
            per_event: false,
            used: false,
            wait: Duration::ZERO,
        };
        let mut seen_n = false;
        for part in value.split(';') {
            let (k, v) = part.trim().split_once('=')?;
            match k {
                "n" => {
                    grant.granted = v.parse().ok()?;
                    seen_n = true;
                }
                "per" => {
                    grant.per_event = match v {
                        "event" => true,
                        "request" => false,
                        _ => return None,
                    }
                }
                "used" => grant.used = v == "1",
                "wait-us" => grant.wait = Duration::from_micros(v.parse().ok()?),
                _ => {}
            }
        }
        seen_n.then_some(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_round_trips() {
        let g = CreditGrant {
            granted: 12,
            per_event: true,
            used: true,
            wait: Duration::from_micros(2500),
        };
        assert_eq!(g.to_header(), "n=12;per=event;used=1;wait-us=2500");
        assert_eq!(CreditGrant::parse(&g.to_header()), Some(g));
    }

    #[test]
    fn garbage_is_not_a_grant() {
        for bad in [
            "",
            "n=x",
            "per=request",
            "n=1;per=bytes",
            "n=1;wait-us=-3",
            "junk",
        ] {
            assert_eq!(CreditGrant::parse(bad), None, "{bad}");
        }
    }
}
