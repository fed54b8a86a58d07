//! The PROXY header encoder: any pair of addresses gives a header within the spec's bounds
//! whose length field matches (v2) and that ends in CRLF (v1).
#![no_main]
use std::net::{IpAddr, SocketAddr};

use dynproxy::cli::ProxyVersion;
use dynproxy::proxy_header::encode;
use libfuzzer_sys::fuzz_target;

fn address(bytes: &[u8]) -> SocketAddr {
    let port = u16::from_be_bytes([bytes[0], bytes[1]]);
    let ip: IpAddr = if bytes[2] & 1 == 0 {
        <[u8; 4]>::try_from(&bytes[3..7]).unwrap().into()
    } else {
        <[u8; 16]>::try_from(&bytes[3..19]).unwrap().into()
    };
    SocketAddr::new(ip, port)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 38 {
        return;
    }
    let pair = (address(&data[..19]), address(&data[19..38]));
    let v1 = encode(ProxyVersion::V1, Some(pair));
    assert!(v1.len() <= 107 && v1.ends_with(b"\r\n") && v1.starts_with(b"PROXY TCP"));
    let v2 = encode(ProxyVersion::V2, Some(pair));
    let len = u16::from_be_bytes([v2[14], v2[15]]) as usize;
    assert_eq!(v2.len(), 16 + len);
    assert!(len == 12 || len == 36);
});
