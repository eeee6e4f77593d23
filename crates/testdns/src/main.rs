//! `sluice-testdns [--listen ADDR] RECORD...`: serves the records on the command line (see
//! `Zone::add_spec`: `MX:domain:preference:exchange`, `A:name:address`, `AAAA:name:address`,
//! `NXDOMAIN:name`, `SERVFAIL:name`) over UDP and TCP on `ADDR` (default `127.0.0.1:0`), for shell interop
//! scripts. Prints the address it listens on, then serves until it is killed.

use std::net::SocketAddr;
use std::process::ExitCode;

use sluice_testdns::{TestDns, Zone};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-testdns: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut zone = Zone::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--listen" {
            let value = args.next().ok_or("--listen needs an address")?;
            listen = value.parse().map_err(|e| format!("--listen {value}: {e}"))?;
        } else {
            zone = zone.add_spec(&arg)?;
        }
    }
    let server = TestDns::start_on(listen, zone).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!("{}", server.addr());
    loop {
        std::thread::park();
    }
}
