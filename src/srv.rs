//! SRV targets (`_SERVICE._tcp.DOMAIN`, RFC 2782): the hosts and ports a service is published
//! at, asked afresh for every session and put in the RFC's order — the lowest priority first
//! and, within a priority, a random order weighted by the records' weights. Each host's
//! addresses then come from the reply's additional section when the server gave them, else
//! from a lookup of their own (resolve.rs), under the same rules as a HOST:PORT target.

use std::collections::BTreeMap;
use std::net::IpAddr;

use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::{Query, ResponseCode};
use hickory_resolver::proto::rr::rdata::SRV;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

use crate::error::Error;
use crate::log::{Joined, Log};
use crate::resolve::{self, Dns, Options};
use crate::runtime;

/// Where one record sends the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The record's target, an absolute name (with the root's dot): no search list applies.
    pub name: String,
    pub port: u16,
    /// Its addresses from the reply's additional section, of the families asked for; empty
    /// when the server gave none (they are then looked up).
    pub glue: Vec<IpAddr>,
}

/// The hosts `name`'s SRV records publish, in the order to try them. NoAddress (68) when
/// the name or its records do not exist, or when its target is "." (the service is
/// decidedly not available there); DnsTemporary (75) when DNS fails.
pub async fn resolve(name: &str, options: &Options<'_>, log: &mut Log) -> Result<Vec<Host>, Error> {
    let (dns, bound) = resolve::open_dns(name, options, log)?;
    let answer = runtime::timeout(bound, ask(&dns, options)).await;
    let records = match answer {
        None => {
            return Err(Error::DnsTemporary(format!(
                "no SRV answer for {name} within {:.1}s",
                bound.as_secs_f64()
            )));
        }
        Some(Err(error)) => return Err(error.for_name(name)),
        Some(Ok(records)) => records,
    };
    // A lone "." (RFC 2782): the service is decidedly not available there.
    if records.iter().all(|(srv, _)| srv.target.is_root()) {
        return Err(Error::NoAddress(format!(
            "{name}: the service is not available there (its SRV target is \".\")"
        )));
    }
    let mut seed = [0u8; 8];
    crate::sys::random(&mut seed);
    let hosts: Vec<Host> = order(records, &mut Random(u64::from_ne_bytes(seed)))
        .into_iter()
        .filter(|(srv, _)| !srv.target.is_root())
        .map(|(srv, glue)| Host {
            name: srv.target.to_ascii(),
            port: srv.port,
            glue,
        })
        .collect();
    log.step(format_args!(
        "{name} publishes {}",
        Joined(hosts.iter().map(Host::label))
    ));
    Ok(hosts)
}

impl Host {
    /// HOST:PORT as the session line names it, without the root's dot.
    pub fn label(&self) -> String {
        let name = self.name.strip_suffix('.').unwrap_or(&self.name);
        format!("{name}:{}", self.port)
    }
}

/// Why a name has no usable SRV records.
enum Missing {
    NoSuchName,
    NoRecords,
    Failed(String),
}

impl Missing {
    fn for_name(self, name: &str) -> Error {
        match self {
            Missing::NoSuchName => resolve::no_such_name(name),
            Missing::NoRecords => Error::NoAddress(format!("{name} has no SRV record")),
            Missing::Failed(why) => resolve::failed(name, &why),
        }
    }
}

/// Each name of the search list in turn, until one has SRV records: the records, each with
/// the additional section's addresses for its target. A failure outweighs a missing name.
async fn ask(dns: &Dns, options: &Options<'_>) -> Result<Vec<(SRV, Vec<IpAddr>)>, Missing> {
    let mut outcome = Missing::NoRecords;
    for name in &dns.names {
        let query = Query::query(name.clone(), RecordType::SRV);
        let response = match resolve::first_reply(dns, query).await {
            Some(Ok(response)) => response,
            Some(Err(NetError::Dns(DnsError::NoRecordsFound(none)))) => {
                if none.response_code == ResponseCode::NXDomain
                    && !matches!(outcome, Missing::Failed(_))
                {
                    outcome = Missing::NoSuchName;
                }
                continue;
            }
            Some(Err(e)) => {
                outcome = Missing::Failed(format!("SRV query failed: {e}"));
                continue;
            }
            None => {
                outcome = Missing::Failed("SRV query got no reply".into());
                continue;
            }
        };
        let records = srv_records(name, &response.answers, &response.additionals, options);
        if !records.is_empty() {
            return Ok(records);
        }
    }
    Err(outcome)
}

/// The SRV records of `name` (or of where its CNAME chain ends) among `answers`, each with
/// the addresses `additionals` give its target, of the families `options` allows.
fn srv_records(
    name: &Name,
    answers: &[Record],
    additionals: &[Record],
    options: &Options<'_>,
) -> Vec<(SRV, Vec<IpAddr>)> {
    let (_, owner) = resolve::follow(name, RecordType::SRV, answers);
    answers
        .iter()
        .filter(|record| record.name == owner)
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some(srv.clone()),
            _ => None,
        })
        .map(|srv| {
            let glue = additionals
                .iter()
                .filter(|record| record.name == srv.target)
                .filter_map(|record| match &record.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                    _ => None,
                })
                .filter(|ip| options.family.allows(*ip))
                .collect();
            (srv, glue)
        })
        .collect()
}

/// A small generator for the weighted draws (splitmix64): seeded from the kernel for each
/// session, from a constant in tests.
pub struct Random(pub u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in 0..=bound.
    fn up_to(&mut self, bound: u32) -> u32 {
        (self.next() % (u64::from(bound) + 1)) as u32
    }
}

/// RFC 2782's order: priorities ascending; within one, records with weight 0 first, then
/// repeatedly a draw of a number up to the sum of the weights left, taking the first record
/// whose running sum reaches it. The RFC draws from 0, which gives weight-0 records their
/// small chance (a draw of 0) but, once none is left, hands the first record a draw more
/// than its weight: from there the draw starts at 1, so that each is chosen next with a
/// chance in proportion to its weight. Records all of weight 0 go in a uniform order.
pub fn order<T>(records: Vec<(SRV, T)>, random: &mut Random) -> Vec<(SRV, T)> {
    let mut by_priority: BTreeMap<u16, Vec<(SRV, T)>> = BTreeMap::new();
    for record in records {
        by_priority
            .entry(record.0.priority)
            .or_default()
            .push(record);
    }
    let mut ordered = Vec::new();
    for (_, mut left) in by_priority {
        left.sort_by_key(|(srv, _)| srv.weight != 0);
        while !left.is_empty() {
            let total: u32 = left.iter().map(|(srv, _)| u32::from(srv.weight)).sum();
            let chosen = if total == 0 {
                random.up_to(left.len() as u32 - 1) as usize
            } else {
                let draw = match left[0].0.weight {
                    0 => random.up_to(total),
                    _ => 1 + random.up_to(total - 1),
                };
                let mut running = 0;
                left.iter()
                    .position(|(srv, _)| {
                        running += u32::from(srv.weight);
                        running >= draw
                    })
                    .unwrap_or(0)
            };
            ordered.push(left.remove(chosen));
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> (SRV, ()) {
        let target = Name::from_ascii(target).unwrap();
        (SRV::new(priority, weight, 5432, target), ())
    }

    fn targets(ordered: &[(SRV, ())]) -> Vec<String> {
        ordered.iter().map(|(s, _)| s.target.to_ascii()).collect()
    }

    /// How many of `rounds` orderings, drawn from `seed`, put `target` first.
    fn times_first(records: &[(SRV, ())], seed: u64, rounds: usize, target: &str) -> usize {
        let mut random = Random(seed);
        (0..rounds)
            .filter(|_| targets(&order(records.to_vec(), &mut random))[0] == target)
            .count()
    }

    #[test]
    fn lower_priorities_come_first_whatever_their_weights() {
        let records = vec![srv(20, 100, "c."), srv(10, 0, "a."), srv(15, 1, "b.")];
        for seed in 0..50 {
            let ordered = order(records.clone(), &mut Random(seed));
            assert_eq!(targets(&ordered), ["a.", "b.", "c."]);
        }
    }

    #[test]
    fn within_a_priority_each_goes_first_in_proportion_to_its_weight() {
        let records = vec![
            srv(10, 10, "light."),
            srv(10, 30, "heavy."),
            srv(10, 60, "most."),
        ];
        let mut random = Random(7);
        let mut first = BTreeMap::<String, u32>::new();
        let draws = 10_000;
        for _ in 0..draws {
            let ordered = order(records.clone(), &mut random);
            assert_eq!(ordered.len(), 3, "every record, once");
            *first.entry(targets(&ordered)[0].clone()).or_default() += 1;
        }
        // Expected 1,000, 3,000 and 6,000 of 10,000; the bounds are four standard
        // deviations wide, and the seed is fixed.
        let share = |name: &str| first[name];
        assert!((880..1_120).contains(&share("light.")), "{first:?}");
        assert!((2_820..3_180).contains(&share("heavy.")), "{first:?}");
        assert!((5_800..6_200).contains(&share("most.")), "{first:?}");
    }

    #[test]
    fn the_first_record_listed_gets_no_draw_more_than_its_weight() {
        // RFC 2782's draw from 0 would send the first-listed 2 in 5 here, not 1 in 4.
        let records = [srv(10, 1, "light."), srv(10, 3, "heavy.")];
        let light_first = times_first(&records, 3, 10_000, "light.");
        // Expected 2,500; four standard deviations: 173.
        assert!((2_327..2_673).contains(&light_first), "{light_first}");
    }

    #[test]
    fn records_all_of_weight_zero_take_turns_first() {
        let records = [srv(10, 0, "a."), srv(10, 0, "b.")];
        let a_first = times_first(&records, 5, 1_000, "a.");
        assert!((400..600).contains(&a_first), "{a_first}");
    }

    #[test]
    fn weight_zero_records_are_chosen_rarely_but_still_tried() {
        let records = vec![srv(10, 0, "zero."), srv(10, 50, "some.")];
        let mut random = Random(1);
        let mut zero_first = 0;
        for _ in 0..1_000 {
            let ordered = order(records.clone(), &mut random);
            assert_eq!(ordered.len(), 2);
            zero_first += u32::from(targets(&ordered)[0] == "zero.");
        }
        // Chosen first only when the draw is 0: one chance in 51 (about 20 of 1,000).
        assert!((5..45).contains(&zero_first), "{zero_first}");
    }
}
