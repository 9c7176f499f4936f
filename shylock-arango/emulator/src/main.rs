//! Runs the ArangoDB HTTP API emulator on a free loopback port until its
//! standard input closes (or it is killed), for trying the ArangoDB examples
//! and for the benchmarks. Prints one line: `URL USER PASSWORD DATABASE`.
//!
//! `cargo run -p shylock-arango-emulator [USER PASSWORD DATABASE]`
//! (defaults `root`, `emulator`, `projectdb`).

use std::io::Read;

fn main() {
    let mut args = std::env::args().skip(1);
    let user = args.next().unwrap_or_else(|| "root".into());
    let password = args.next().unwrap_or_else(|| "emulator".into());
    let db = args.next().unwrap_or_else(|| "projectdb".into());
    let emulator = shylock_arango_emulator::Emulator::start(&user, &password, &[db.as_str()]);
    println!("{} {user} {password} {db}", emulator.url());
    // Serve until stdin is closed: a parent that dies takes the emulator along.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}
