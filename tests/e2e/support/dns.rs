//! A real DNS server on loopback (UDP and TCP on one port) whose answers — and misbehaviour —
//! the test sets and changes between sessions. It speaks just enough of RFC 1035 to answer
//! A, AAAA, CNAME and SRV questions the way an authoritative server would.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_SOA: u16 = 6;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;

#[derive(Clone, Debug)]
pub enum Record {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    /// An SRV record; `glue`, its target's addresses, travel in the additional section.
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
        glue: Vec<IpAddr>,
    },
}

/// How the server answers every question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// From the records: NXDOMAIN for unknown names, empty NOERROR for a missing type.
    Answer,
    ServFail,
    Refused,
    /// Reads the query and never answers.
    Silent,
    /// Answers A queries; never answers AAAA ones, as some broken servers and middleboxes.
    SilentForAaaa,
    /// Answers after this long.
    Slow(Duration),
    /// Answers AAAA at once and A after this long, as when the two answers come from
    /// different places.
    SlowForA(Duration),
    /// Answers A at once and AAAA after this long.
    SlowForAaaa(Duration),
    /// The query's ID, then bytes that are not a DNS message.
    Garbage,
    /// A correct answer under another ID.
    WrongId,
    /// A correct answer cut off in the middle of its first record.
    CutOff,
    /// An A record whose RDLENGTH claims more bytes than the message has.
    BadRdLength,
    /// An answer whose owner name is a compression pointer to itself.
    PointerLoop,
    /// Over UDP only the header with TC set; over TCP the full answer.
    TruncateUdp,
    /// FORMERR (rcode 1) to a query with an EDNS OPT record (any additional record); an
    /// answer otherwise — as old servers and some middleboxes do.
    FormErrToEdns,
    /// NOTIMP (rcode 4) to a query with EDNS, likewise.
    NotImpToEdns,
}

struct State {
    records: HashMap<String, Vec<Record>>,
    behaviour: Behaviour,
}

pub struct DnsServer {
    pub address: SocketAddr,
    state: Arc<Mutex<State>>,
    queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl DnsServer {
    /// On 127.0.0.1, a free port.
    pub fn start() -> DnsServer {
        loop {
            let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
            let address = udp.local_addr().expect("UDP address");
            if let Ok(tcp) = TcpListener::bind(address) {
                return DnsServer::serve(udp, tcp);
            }
        }
    }

    /// On a given address (port 53 of a loopback address, for resolv.conf, which has no port).
    pub fn start_on(address: SocketAddr) -> DnsServer {
        let udp = UdpSocket::bind(address).expect("bind the DNS UDP socket");
        let tcp = TcpListener::bind(address).expect("bind the DNS TCP socket");
        DnsServer::serve(udp, tcp)
    }

    fn serve(udp: UdpSocket, tcp: TcpListener) -> DnsServer {
        let server = DnsServer {
            address: udp.local_addr().expect("UDP address"),
            state: Arc::new(Mutex::new(State {
                records: HashMap::new(),
                behaviour: Behaviour::Answer,
            })),
            queries: Arc::default(),
            tcp_queries: Arc::default(),
            stop: Arc::default(),
        };
        let (state, queries, stop) = (
            server.state.clone(),
            server.queries.clone(),
            server.stop.clone(),
        );
        thread::spawn(move || serve_udp(udp, state, queries, stop));
        let (state, queries, stop) = (
            server.state.clone(),
            server.tcp_queries.clone(),
            server.stop.clone(),
        );
        thread::spawn(move || serve_tcp(tcp, state, queries, stop));
        server
    }

    /// Replaces the records of `name`.
    pub fn set(&self, name: &str, records: &[Record]) -> &Self {
        let mut state = self.state.lock().unwrap();
        state.records.insert(normalize(name), records.to_vec());
        self
    }

    pub fn behave(&self, behaviour: Behaviour) {
        self.state.lock().unwrap().behaviour = behaviour;
    }

    /// Questions received over UDP so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// Questions received over TCP so far.
    pub fn tcp_queries(&self) -> usize {
        self.tcp_queries.load(Ordering::SeqCst)
    }

    /// The option that points dynproxy at this server.
    pub fn arg(&self) -> String {
        format!("--nameserver={}", self.address)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn serve_udp(
    socket: UdpSocket,
    state: Arc<Mutex<State>>,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        queries.fetch_add(1, Ordering::SeqCst);
        let query = buf[..n].to_vec();
        let (behaviour, reply) = {
            let state = state.lock().unwrap();
            (state.behaviour, reply(&query, &state, true))
        };
        let Some(reply) = reply else { continue };
        let socket = socket.try_clone().unwrap();
        let delay = delay(behaviour, &query);
        thread::spawn(move || {
            thread::sleep(delay);
            let _ = socket.send_to(&reply, peer);
        });
    }
}

/// How long `behaviour` waits before answering `query` over UDP.
fn delay(behaviour: Behaviour, query: &[u8]) -> Duration {
    let qtype = parse_question(query).map(|question| question.qtype);
    match behaviour {
        Behaviour::Slow(delay) => delay,
        Behaviour::SlowForA(delay) if qtype == Some(TYPE_A) => delay,
        Behaviour::SlowForAaaa(delay) if qtype == Some(TYPE_AAAA) => delay,
        _ => Duration::ZERO,
    }
}

fn serve_tcp(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    listener.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::SeqCst) {
        let Ok((stream, _)) = listener.accept() else {
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        let (state, queries) = (state.clone(), queries.clone());
        thread::spawn(move || serve_tcp_connection(stream, state, queries));
    }
}

fn serve_tcp_connection(
    mut stream: TcpStream,
    state: Arc<Mutex<State>>,
    queries: Arc<AtomicUsize>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let mut query = vec![0u8; u16::from_be_bytes(len) as usize];
        if stream.read_exact(&mut query).is_err() {
            return;
        }
        queries.fetch_add(1, Ordering::SeqCst);
        let reply = reply(&query, &state.lock().unwrap(), false);
        let Some(reply) = reply else { continue };
        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).is_err() {
            return;
        }
    }
}

struct Question {
    id: [u8; 2],
    name: String,
    qtype: u16,
    /// The question section as received, echoed back in the answer.
    raw: Vec<u8>,
}

fn parse_question(query: &[u8]) -> Option<Question> {
    if query.len() < 12 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    Some(Question {
        id: [query[0], query[1]],
        name: labels.join("."),
        qtype,
        raw: query.get(12..at + 4)?.to_vec(),
    })
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn record(owner: &str, rtype: u16, rdata: &[u8]) -> Vec<u8> {
    let mut out = encode_name(owner);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // class IN
    out.extend_from_slice(&0u32.to_be_bytes()); // TTL 0: nothing may be cached
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
    out
}

/// Encoded resource records, each ready to go in a message.
type Records = Vec<Vec<u8>>;

/// The answer records for a question, following CNAMEs the way a recursive server does
/// (at most 40 links, so a loop ends as a response full of CNAMEs), and the additional
/// ones (SRV targets' glue). None: no such name.
fn answers(
    question: &Question,
    records: &HashMap<String, Vec<Record>>,
) -> Option<(Records, Records)> {
    let mut name = question.name.clone();
    let mut out = Vec::new();
    let mut additional = Vec::new();
    for _ in 0..40 {
        let found = records.get(&name)?;
        if let Some(Record::Cname(target)) = found.iter().find(|r| matches!(r, Record::Cname(_))) {
            out.push(record(&name, TYPE_CNAME, &encode_name(target)));
            name = normalize(target);
            if !records.contains_key(&name) {
                return Some((out, additional));
            }
            continue;
        }
        for r in found {
            match r {
                Record::A(ip) if question.qtype == TYPE_A => {
                    out.push(record(&name, TYPE_A, &ip.octets()))
                }
                Record::Aaaa(ip) if question.qtype == TYPE_AAAA => {
                    out.push(record(&name, TYPE_AAAA, &ip.octets()))
                }
                Record::Srv {
                    priority,
                    weight,
                    port,
                    target,
                    glue,
                } if question.qtype == TYPE_SRV => {
                    let mut rdata = Vec::new();
                    for value in [priority, weight, port] {
                        rdata.extend_from_slice(&value.to_be_bytes());
                    }
                    rdata.extend_from_slice(&encode_name(target));
                    out.push(record(&name, TYPE_SRV, &rdata));
                    for ip in glue {
                        additional.push(match ip {
                            IpAddr::V4(v4) => record(target, TYPE_A, &v4.octets()),
                            IpAddr::V6(v6) => record(target, TYPE_AAAA, &v6.octets()),
                        });
                    }
                }
                _ => {}
            }
        }
        return Some((out, additional));
    }
    Some((out, additional))
}

/// ARCOUNT: an OPT record travels in the additional section.
fn has_additional(query: &[u8]) -> bool {
    query.len() >= 12 && u16::from_be_bytes([query[10], query[11]]) > 0
}

fn message(
    question: &Question,
    rcode: u8,
    truncated: bool,
    answers: &[Vec<u8>],
    authority: &[Vec<u8>],
) -> Vec<u8> {
    with_additional(question, rcode, truncated, answers, authority, &[])
}

fn with_additional(
    question: &Question,
    rcode: u8,
    truncated: bool,
    answers: &[Vec<u8>],
    authority: &[Vec<u8>],
    additional: &[Vec<u8>],
) -> Vec<u8> {
    let mut out = question.id.to_vec();
    let flags1 = 0x80 | 0x04 | 0x01 | if truncated { 0x02 } else { 0 }; // QR, AA, RD, TC
    out.extend_from_slice(&[flags1, 0x80 | rcode]); // RA
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&(authority.len() as u16).to_be_bytes());
    out.extend_from_slice(&(additional.len() as u16).to_be_bytes());
    out.extend_from_slice(&question.raw);
    for r in answers.iter().chain(authority).chain(additional) {
        out.extend_from_slice(r);
    }
    out
}

fn soa() -> Vec<u8> {
    let mut rdata = encode_name("ns.test");
    rdata.extend_from_slice(&encode_name("admin.test"));
    for value in [1u32, 60, 60, 60, 0] {
        rdata.extend_from_slice(&value.to_be_bytes());
    }
    record("test", TYPE_SOA, &rdata)
}

/// The classic UDP payload limit; this server ignores EDNS, as many still do.
const UDP_LIMIT: usize = 512;

fn reply(query: &[u8], state: &State, udp: bool) -> Option<Vec<u8>> {
    let question = parse_question(query)?;
    let normal = || match answers(&question, &state.records) {
        Some((answers, additional)) => {
            let full = with_additional(&question, 0, false, &answers, &[], &additional);
            if udp && full.len() > UDP_LIMIT {
                message(&question, 0, true, &[], &[])
            } else {
                full
            }
        }
        None => message(&question, 3, false, &[], &[soa()]),
    };
    Some(match state.behaviour {
        Behaviour::Answer
        | Behaviour::Slow(_)
        | Behaviour::SlowForA(_)
        | Behaviour::SlowForAaaa(_) => normal(),
        Behaviour::ServFail => message(&question, 2, false, &[], &[]),
        Behaviour::Refused => message(&question, 5, false, &[], &[]),
        Behaviour::Silent => return None,
        Behaviour::SilentForAaaa if question.qtype == TYPE_AAAA => return None,
        Behaviour::SilentForAaaa => normal(),
        Behaviour::Garbage => {
            let mut out = question.id.to_vec();
            out.extend_from_slice(b"\xff\xffthis is not a DNS message at all");
            out
        }
        Behaviour::WrongId => {
            let mut out = normal();
            out[0] ^= 0x5a;
            out
        }
        Behaviour::CutOff => {
            let mut out = normal();
            let cut = 12 + question.raw.len() + 5;
            out.truncate(cut.min(out.len()));
            out
        }
        Behaviour::BadRdLength => {
            let mut r = record(&question.name, TYPE_A, &[127, 0, 0, 1]);
            let len = r.len();
            r[len - 6..len - 4].copy_from_slice(&200u16.to_be_bytes());
            message(&question, 0, false, &[r], &[])
        }
        Behaviour::PointerLoop => {
            let offset = 12 + question.raw.len();
            let mut r = vec![0xc0 | (offset >> 8) as u8, offset as u8];
            r.extend_from_slice(&TYPE_A.to_be_bytes());
            r.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1]);
            message(&question, 0, false, &[r], &[])
        }
        Behaviour::FormErrToEdns if has_additional(query) => message(&question, 1, false, &[], &[]),
        Behaviour::NotImpToEdns if has_additional(query) => message(&question, 4, false, &[], &[]),
        Behaviour::FormErrToEdns | Behaviour::NotImpToEdns => normal(),
        Behaviour::TruncateUdp if udp => message(&question, 0, true, &[], &[]),
        Behaviour::TruncateUdp => normal(),
    })
}
