//! The UDP side: one socket and one task per simulated BMC, all in one process. The
//! tasks own their BMC's state; control commands reach them over a channel.

use super::bmc::{Bmc, BmcConfig, Request, Vendor};
use super::control::{Change, Command, Faults, Targets};
use super::lan::{Endpoint, User};
use super::thermal::SplitMix;
use crate::msg::netfn;
use crate::rakp::Privilege;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// Everything `dcmon bmc-sim` starts with.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub bind: IpAddr,
    /// BMC `i` listens on `base_port + i`; 0: each BMC on any free port (see
    /// [`Fleet::addrs`]).
    pub base_port: u16,
    pub count: usize,
    pub vendor: Vendor,
    /// BMC `i` is seeded with `seed + i`: same seed, same fleet.
    pub seed: u64,
    pub dell_refuses_manual_fans: bool,
    pub users: Vec<User>,
    /// Faults every BMC starts with.
    pub faults: Faults,
    /// CPU load (0–1) every BMC starts with; by default drawn from its seed.
    pub load: Option<f64>,
}

impl SimConfig {
    /// One BMC of `vendor` on a free loopback port, with one administrator account.
    pub fn loopback(vendor: Vendor, user: &str, password: &str) -> Self {
        SimConfig {
            bind: IpAddr::from([127, 0, 0, 1]),
            base_port: 0,
            count: 1,
            vendor,
            seed: 1,
            dell_refuses_manual_fans: false,
            users: vec![User {
                name: user.into(),
                password: password.into(),
                max_privilege: Privilege::Administrator,
            }],
            faults: Faults::default(),
            load: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("no BMCs to simulate: the count must be at least 1")]
    NoBmcs,
    #[error("{count} BMCs from port {base_port} run past port 65535")]
    Ports { base_port: u16, count: usize },
    #[error("binding UDP {addr}: {source}{hint}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("reading the OS random source: {0}")]
    Random(String),
}

enum Message {
    /// A change, acknowledged once applied so that "ok" means "in effect".
    Change(Change, oneshot::Sender<()>),
    Status(oneshot::Sender<String>),
}

/// The running simulated BMCs.
pub struct Fleet {
    inboxes: Vec<mpsc::UnboundedSender<Message>>,
    addrs: Vec<SocketAddr>,
    tasks: JoinSet<()>,
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Fleet {
    /// Binds every socket first (so a taken port fails the start, not one BMC), then
    /// starts one task per BMC.
    pub async fn start(config: SimConfig) -> Result<Self, ServerError> {
        if config.count == 0 {
            return Err(ServerError::NoBmcs);
        }
        let last = usize::from(config.base_port) + config.count - 1;
        if last > usize::from(u16::MAX) {
            return Err(ServerError::Ports {
                base_port: config.base_port,
                count: config.count,
            });
        }
        let mut sockets = Vec::with_capacity(config.count);
        for i in 0..config.count {
            let port = if config.base_port == 0 {
                0
            } else {
                config.base_port + i as u16
            };
            let addr = SocketAddr::new(config.bind, port);
            let socket = UdpSocket::bind(addr).await.map_err(|source| {
                let hint = if source.raw_os_error() == Some(24) {
                    " (too many open files: raise `ulimit -n`)"
                } else {
                    ""
                };
                ServerError::Bind { addr, source, hint }
            })?;
            let addr = socket.local_addr().unwrap_or(addr);
            sockets.push((addr, Arc::new(socket)));
        }
        let mut entropy = [0u8; 8];
        getrandom::fill(&mut entropy).map_err(|e| ServerError::Random(e.to_string()))?;
        let entropy = u64::from_le_bytes(entropy);
        let users: Arc<[User]> = config.users.clone().into();
        let mut fleet = Self {
            inboxes: Vec::with_capacity(config.count),
            addrs: Vec::with_capacity(config.count),
            tasks: JoinSet::new(),
        };
        let started = now();
        for (i, (addr, socket)) in sockets.into_iter().enumerate() {
            let mut bmc = Bmc::new(
                BmcConfig {
                    vendor: config.vendor,
                    seed: config.seed.wrapping_add(i as u64),
                    dell_refuses_manual_fans: config.dell_refuses_manual_fans,
                },
                started,
            );
            if let Some(load) = config.load {
                bmc.set_load(load);
            }
            bmc.set_temperatures_lost(config.faults.lose_temperatures);
            let mut endpoint = Endpoint::new(bmc, users.clone());
            endpoint.set_reject_credentials(config.faults.reject_credentials);
            let (tx, rx) = mpsc::unbounded_channel();
            let bmc = SimulatedBmc {
                index: i,
                addr,
                socket,
                endpoint,
                faults: config.faults.clone(),
                // Session IDs, RAKP randoms and IVs: unpredictable across runs, cheap
                // per datagram.
                random: SplitMix(entropy ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            };
            fleet.tasks.spawn(bmc.serve(rx));
            fleet.inboxes.push(tx);
            fleet.addrs.push(addr);
        }
        Ok(fleet)
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Carries out one control command; returns the text to print ("ok", status lines
    /// or an error naming the missing BMCs).
    pub async fn execute(&self, command: Command) -> String {
        let (targets, change) = match command {
            Command::Change(t, c) => (t, Some(c)),
            Command::Status(t) => (t, None),
        };
        let chosen: Vec<usize> = (0..self.inboxes.len())
            .filter(|i| targets.contains(*i))
            .collect();
        if chosen.is_empty() {
            return format!(
                "error: no BMC matches; indexes are 0-{}",
                self.inboxes.len() - 1
            );
        }
        if let Targets::Range(r) = &targets
            && *r.end() >= self.inboxes.len()
        {
            return format!(
                "error: BMC {} does not exist; indexes are 0-{}",
                r.end(),
                self.inboxes.len() - 1
            );
        }
        let mut out = String::new();
        for i in chosen {
            match &change {
                Some(c) => {
                    let (tx, rx) = oneshot::channel();
                    let _ = self.inboxes[i].send(Message::Change(c.clone(), tx));
                    let _ = rx.await;
                }
                None => {
                    let (tx, rx) = oneshot::channel();
                    let _ = self.inboxes[i].send(Message::Status(tx));
                    if let Ok(line) = rx.await {
                        let _ = writeln!(out, "{line}");
                    }
                }
            }
        }
        if change.is_some() {
            out.push_str("ok\n");
        }
        out
    }

    /// Stops every BMC task.
    pub async fn shutdown(mut self) {
        self.inboxes.clear();
        self.tasks.shutdown().await;
    }
}

struct SimulatedBmc {
    index: usize,
    addr: SocketAddr,
    socket: Arc<UdpSocket>,
    endpoint: Endpoint,
    faults: Faults,
    random: SplitMix,
}

/// Largest datagram read; RMCP+ messages of the supported commands are far smaller.
const MAX_DATAGRAM: usize = 1024;

impl SimulatedBmc {
    async fn serve(mut self, mut inbox: mpsc::UnboundedReceiver<Message>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            tokio::select! {
                // Control first: a fault switched on applies to the next datagram.
                biased;
                message = inbox.recv() => match message {
                    Some(Message::Change(change, applied)) => {
                        self.change(change);
                        let _ = applied.send(());
                    }
                    Some(Message::Status(reply)) => {
                        let _ = reply.send(self.status());
                    }
                    None => return,
                },
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, peer)) => self.answer(&buf[..len], peer).await,
                    Err(e) => tracing::debug!(bmc = self.index, error = %e, "receive failed"),
                },
            }
        }
    }

    async fn answer(&mut self, datagram: &[u8], peer: SocketAddr) {
        if self.faults.silent {
            return;
        }
        let random = &mut self.random;
        let mut fill = |buf: &mut [u8]| {
            for chunk in buf.chunks_mut(8) {
                let n = chunk.len();
                chunk.copy_from_slice(&random.next_u64().to_le_bytes()[..n]);
            }
        };
        let reply = if self.faults.garbage {
            let mut junk = vec![0u8; datagram.len().max(16)];
            fill(&mut junk);
            junk
        } else {
            match self.endpoint.handle(datagram, now(), &mut fill) {
                Ok(reply) => reply,
                Err(e) => {
                    tracing::debug!(bmc = self.index, %peer, "dropped: {e}");
                    return;
                }
            }
        };
        if self.faults.delay.is_zero() {
            if let Err(e) = self.socket.send_to(&reply, peer).await {
                tracing::debug!(bmc = self.index, %peer, error = %e, "send failed");
            }
        } else {
            let socket = self.socket.clone();
            let delay = self.faults.delay;
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = socket.send_to(&reply, peer).await;
            });
        }
    }

    fn change(&mut self, change: Change) {
        if self.faults.apply(&change) {
            self.endpoint
                .set_reject_credentials(self.faults.reject_credentials);
            self.endpoint
                .bmc_mut()
                .set_temperatures_lost(self.faults.lose_temperatures);
            return;
        }
        match change {
            Change::Load(load) => {
                let bmc = self.endpoint.bmc_mut();
                bmc.advance(now());
                bmc.set_load(load);
            }
            Change::Power(on) => {
                // Chassis Control power up / power down (IPMI 2.0 §28.3).
                let request = Request {
                    netfn: netfn::CHASSIS,
                    cmd: 0x02,
                    data: &[u8::from(on)],
                    privilege: Privilege::Administrator,
                };
                self.endpoint.bmc_mut().handle(&request, now());
            }
            _ => {}
        }
    }

    fn status(&mut self) -> String {
        let sessions = self.endpoint.active_sessions();
        let bmc = self.endpoint.bmc_mut();
        bmc.advance(now());
        let fans: Vec<String> = bmc.fan_rpm().iter().map(|r| format!("{r:.0}")).collect();
        let f = &self.faults;
        let mut faults: Vec<String> = [
            (f.silent, "silent"),
            (f.garbage, "garbage"),
            (f.reject_credentials, "reject-credentials"),
            (f.lose_temperatures, "lose-temperatures"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| name.to_string())
        .collect();
        if !f.delay.is_zero() {
            faults.push(format!("delay={}ms", f.delay.as_millis()));
        }
        format!(
            "bmc {} {} cpu {:.1}C fans {} rpm sessions {} faults {}",
            self.index,
            self.addr,
            bmc.cpu_temperature(),
            fans.join(","),
            sessions,
            if faults.is_empty() {
                "none".into()
            } else {
                faults.join(",")
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::control::parse;

    fn config(count: usize, base_port: u16) -> SimConfig {
        SimConfig {
            bind: IpAddr::from([127, 0, 0, 1]),
            base_port,
            count,
            vendor: Vendor::Supermicro,
            seed: 1,
            dell_refuses_manual_fans: false,
            users: vec![User {
                name: "admin".into(),
                password: "admin".into(),
                max_privilege: Privilege::Administrator,
            }],
            faults: Faults::default(),
            load: None,
        }
    }

    /// A free block of `n` consecutive UDP ports on loopback.
    fn free_ports(n: usize) -> u16 {
        for _ in 0..50 {
            let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let base = probe.local_addr().unwrap().port();
            drop(probe);
            if usize::from(base) + n < 65536
                && (0..n).all(|i| std::net::UdpSocket::bind(("127.0.0.1", base + i as u16)).is_ok())
            {
                return base;
            }
        }
        panic!("no block of {n} free UDP ports");
    }

    const PING: [u8; 12] = [
        0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x80, 0x09, 0x00, 0x00,
    ];

    async fn ping(addr: SocketAddr) -> Option<Vec<u8>> {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(&PING, addr).await.unwrap();
        let mut buf = [0u8; 512];
        let got =
            tokio::time::timeout(Duration::from_millis(300), client.recv_from(&mut buf)).await;
        got.ok().map(|r| buf[..r.unwrap().0].to_vec())
    }

    #[tokio::test]
    async fn every_bmc_answers_on_its_own_port_and_faults_apply_per_bmc() {
        let base = free_ports(3);
        let fleet = Fleet::start(config(3, base)).await.unwrap();
        for addr in fleet.addrs() {
            assert_eq!(ping(*addr).await.map(|p| p[8]), Some(0x40), "{addr}");
        }
        assert_eq!(
            fleet.execute(parse("fault 1 silent on").unwrap()).await,
            "ok\n"
        );
        assert!(ping(fleet.addrs()[1]).await.is_none());
        assert!(ping(fleet.addrs()[0]).await.is_some());
        fleet.execute(parse("fault 2 garbage on").unwrap()).await;
        let junk = ping(fleet.addrs()[2]).await.unwrap();
        assert_ne!(junk.get(..4), Some(&PING[..4]));
        let status = fleet.execute(parse("status all").unwrap()).await;
        assert_eq!(status.lines().count(), 3, "{status}");
        assert!(
            status.lines().nth(1).unwrap().ends_with("faults silent"),
            "{status}"
        );
        assert!(
            fleet
                .execute(parse("status 3").unwrap())
                .await
                .starts_with("error")
        );
        fleet.shutdown().await;
    }

    #[tokio::test]
    async fn delay_fault_answers_late() {
        let base = free_ports(1);
        let fleet = Fleet::start(config(1, base)).await.unwrap();
        fleet.execute(parse("fault 0 delay 500").unwrap()).await;
        assert!(
            ping(fleet.addrs()[0]).await.is_none(),
            "answered within 300 ms"
        );
        fleet.shutdown().await;
    }

    /// Many sessions over two pooled sockets: every one authenticates and reads its own
    /// BMC, answers never cross between sessions, and a silent BMC times out alone.
    #[tokio::test]
    async fn pooled_sessions_share_sockets_and_keep_their_answers_apart() {
        use crate::client;
        use crate::transport::lan::{LanConfig, LanPool};
        let n = 24;
        let base = free_ports(n);
        let fleet = Fleet::start(config(n, base)).await.unwrap();
        fleet.execute(parse("fault 5 silent on").unwrap()).await;
        let pool = LanPool::new(2, false).await.unwrap();
        let mut sessions = Vec::new();
        for addr in fleet.addrs() {
            let mut c = LanConfig::new("127.0.0.1", "admin", "admin");
            c.port = addr.port();
            c.timeout = Duration::from_millis(800);
            c.attempts = 2;
            sessions.push(std::sync::Arc::new(pool.session(c).await.unwrap()));
        }
        assert_eq!(pool.sessions(), n);
        // A second session to the same BMC goes to the other socket; a third has none.
        let mut again = LanConfig::new("127.0.0.1", "admin", "admin");
        again.port = fleet.addrs()[0].port();
        let second = pool.session(again.clone()).await.unwrap();
        assert!(pool.session(again).await.is_err());
        drop(second);
        let mut tasks = tokio::task::JoinSet::new();
        for (i, s) in sessions.iter().enumerate() {
            let s = s.clone();
            tasks.spawn(async move {
                let records = client::sdr_records(&*s).await;
                let read = match records {
                    Ok(r) => client::read_sensors(&*s, &r).await.map(|v| v.len()),
                    Err(e) => Err(e),
                };
                (i, read)
            });
        }
        let mut results: Vec<_> = tasks.join_all().await;
        results.sort_by_key(|r| r.0);
        for (i, r) in &results {
            let i = *i;
            match (i, r) {
                (5, Err(crate::IpmiError::Timeout { .. })) => {}
                (5, other) => panic!("silent BMC: {other:?}"),
                (_, Ok(sensors)) => assert!(*sensors > 5, "BMC {i}: {sensors} sensors"),
                (_, Err(e)) => panic!("BMC {i}: {e}"),
            }
        }
        drop(sessions);
        assert_eq!(pool.sessions(), 0);
        fleet.shutdown().await;
    }

    #[tokio::test]
    async fn a_taken_port_fails_the_start() {
        let base = free_ports(2);
        let _taken = std::net::UdpSocket::bind(("127.0.0.1", base + 1)).unwrap();
        let err = Fleet::start(config(2, base)).await.err().unwrap();
        assert!(matches!(err, ServerError::Bind { .. }), "{err}");
        assert!(matches!(
            Fleet::start(config(2, 65535)).await,
            Err(ServerError::Ports { .. })
        ));
    }
}
