//! Reproducible pseudo-random streams: a sender writes one, a receiver regenerates it and
//! compares every byte, so a loss, a duplicate or a reordering is caught at its offset.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Mutex, mpsc};
use std::thread;

use super::WAIT;
use super::backend::{self, serve};
use super::launch::{Launcher, Style};

const BLOCK: usize = 64 * 1024;

/// xorshift64*: fast, and good enough that shifted or repeated blocks never match.
fn block(seed: u64, index: u64, out: &mut [u8; BLOCK]) {
    let mut state = (seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
    for chunk in out.chunks_exact_mut(8) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        chunk.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
}

/// Writes `len` bytes of stream `seed`.
pub fn send(writer: &mut impl Write, seed: u64, len: u64) -> io::Result<()> {
    let mut buf = Box::new([0u8; BLOCK]);
    let mut sent = 0u64;
    let mut index = 0;
    while sent < len {
        block(seed, index, &mut buf);
        let n = (len - sent).min(BLOCK as u64) as usize;
        writer.write_all(&buf[..n])?;
        sent += n as u64;
        index += 1;
    }
    Ok(())
}

/// Reads to end of stream and checks it is exactly `len` bytes of stream `seed`.
pub fn receive(reader: &mut impl Read, seed: u64, len: u64) -> Result<(), String> {
    let mut expected = Box::new([0u8; BLOCK]);
    let mut buf = vec![0u8; BLOCK];
    let mut offset = 0u64;
    let mut ready_block = u64::MAX;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| format!("read failed at offset {offset}: {e}"))?;
        if n == 0 {
            break;
        }
        for &byte in &buf[..n] {
            if offset >= len {
                return Err(format!("more than the {len} bytes sent arrived"));
            }
            let index = offset / BLOCK as u64;
            if index != ready_block {
                block(seed, index, &mut expected);
                ready_block = index;
            }
            if byte != expected[(offset % BLOCK as u64) as usize] {
                return Err(format!("byte {offset} differs from what was sent"));
            }
            offset += 1;
        }
    }
    if offset != len {
        return Err(format!("{offset} of {len} bytes arrived"));
    }
    Ok(())
}

/// Sends `len` bytes of stream `send_seed` (then half-closes) while checking that exactly
/// `len` bytes of stream `receive_seed` arrive: one end of a both-ways transfer.
pub fn exchange(
    stream: &TcpStream,
    send_seed: u64,
    receive_seed: u64,
    len: u64,
) -> Result<(), String> {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        send(&mut writer, send_seed, len).and_then(|()| writer.shutdown(Shutdown::Write))
    });
    let received = receive(&mut &*stream, receive_seed, len);
    let sent = sender
        .join()
        .unwrap()
        .map_err(|e| format!("sending failed: {e}"));
    received.and(sent)
}

/// A backend on 127.0.0.1 for `exchange`: it sends stream 2 and expects stream 1, and
/// reports each connection's result on the returned channel.
pub fn exchanging_backend(len: u64) -> (backend::Backend, mpsc::Receiver<Result<(), String>>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = serve(listener, move |stream: TcpStream| {
        let result = exchange(&stream, 2, 1, len);
        tx.lock().unwrap().send(result).unwrap();
    });
    (backend, rx)
}

/// `len` random bytes each way at once through dynproxy started in `style`, checked byte for
/// byte on both ends, and the session line's byte counts.
pub fn both_ways_through(style: Style, len: u64) {
    let (backend, results) = exchanging_backend(len);
    let launcher = Launcher::start(style, "127.0.0.1", &[backend.address.to_string()], &[]);
    assert_eq!(
        exchange(&launcher.connect(), 1, 2, len),
        Ok(()),
        "backend → client"
    );
    assert_eq!(
        results.recv_timeout(WAIT).unwrap(),
        Ok(()),
        "client → backend"
    );
    let line = &launcher.sessions(1)[0];
    assert!(
        line.contains(&format!("to_backend={len} to_client={len}")),
        "{line}"
    );
}
