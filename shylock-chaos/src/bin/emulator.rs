//! The ArangoDB emulator as its own process, so the chaos controller can
//! pause it (`SIGSTOP`). Listens on a free 127.0.0.1 port, prints one line
//! `URL USER PASSWORD DATABASE`, and serves until its stdin closes.

use std::io::{Read, Write};

fn main() {
    let (user, password, db) = ("root", "chaos", "chaosdb");
    let emulator = shylock_arango_emulator::Emulator::start(user, password, &[db]);
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{} {user} {password} {db}", emulator.url());
    let _ = out.flush();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}
