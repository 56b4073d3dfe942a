//! A real Kafka-protocol broker for tests and for `loadgen experiment 6`: [tansu](https://crates.io/crates/tansu), started as a
//! plain process on a free loopback port, from an empty working directory, with the sqlite
//! storage engine (its `memory://` engine answers ListOffsets wrongly). Killed on drop.
//!
//! When `tansu` is not installed, [`Broker::start`] returns `None` and the test skips with a
//! note, except in CI (`CI=true`), where a missing broker is a failure: `.ci/run` installs it.
//! Set `TANSU` to use a binary that is not on `PATH`.
//!
//! Brokers started with [`Broker::start`] (the tests') run one at a time in a test binary: a
//! second test waits until the first one's broker is dropped. The Kafka tests start several
//! processes each and measure a group's behaviour, so on a 2-core machine two of them at once
//! would mostly measure each other.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// A running tansu broker.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    dir: PathBuf,
    port: u16,
    binary: PathBuf,
    /// Whether this broker holds the test binary's one broker slot.
    serial: bool,
}

/// The test binary's one broker slot: taken by [`Broker::start`], given back on drop.
static SLOT: Mutex<bool> = Mutex::new(false);
static SLOT_FREED: Condvar = Condvar::new();

fn take_slot() {
    let mut busy = SLOT.lock().unwrap_or_else(|p| p.into_inner());
    while *busy {
        busy = SLOT_FREED.wait(busy).unwrap_or_else(|p| p.into_inner());
    }
    *busy = true;
}

fn give_slot() {
    *SLOT.lock().unwrap_or_else(|p| p.into_inner()) = false;
    SLOT_FREED.notify_one();
}

fn tansu_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TANSU") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("tansu"))
        .find(|candidate| candidate.is_file())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Starts a broker, or skips the calling test when none is installed (outside CI).
#[macro_export]
macro_rules! broker_or_skip {
    () => {
        match $crate::Broker::start() {
            Some(broker) => broker,
            None => return,
        }
    };
}

impl Broker {
    /// Starts tansu on a free loopback port and waits until it accepts connections.
    ///
    /// # Panics
    /// In CI when tansu is missing, and whenever an installed tansu does not come up: a test
    /// that needs the broker cannot go on without it.
    pub fn start() -> Option<Broker> {
        if tansu_binary().is_none() {
            assert!(
                !in_ci(),
                "CI=true and no tansu broker on PATH: .ci/run installs it with \
                 `cargo install tansu --version 0.6.0 --locked --no-default-features --features libsql`"
            );
            eprintln!("skipped: no tansu broker on PATH (see README, Kafka section)");
            return None;
        }
        take_slot();
        match Broker::try_start() {
            Ok(mut broker) => {
                broker.serial = true;
                Some(broker)
            }
            Err(e) => {
                give_slot();
                panic!("{e}")
            }
        }
    }

    /// Starts tansu on a free loopback port, or says why it could not.
    ///
    /// # Errors
    /// When tansu is not installed, cannot be started, or does not listen within 30 s.
    pub fn try_start() -> Result<Broker, String> {
        Broker::try_start_with_storage("sqlite://tansu.db")
    }

    /// Starts tansu as [`Broker::try_start`] does, with another storage engine: `memory://tansu/`
    /// serves produce and fetch without touching the disk (benchmarks use it so that the broker
    /// is not what they measure), but answers ListOffsets wrongly, so lag is not to be trusted.
    ///
    /// # Errors
    /// As [`Broker::try_start`].
    pub fn try_start_with_storage(storage: &str) -> Result<Broker, String> {
        let binary = tansu_binary().ok_or(
            "no tansu broker on PATH: install it with `cargo install tansu --version 0.6.0 \
             --locked --no-default-features --features libsql`, or pass --bootstrap-servers",
        )?;
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "testbroker-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // A free port: bind, read it, release it. tansu binds it right after.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free loopback port: {e}"))?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("tansu.log"))
            .map_err(|e| format!("cannot create the broker log: {e}"))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot clone the log handle: {e}"))?;
        let child = Command::new(&binary)
            .current_dir(&dir)
            .env("RUST_LOG", "warn")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", storage])
            .stdin(Stdio::null())
            .stdout(log2)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut broker = Broker {
            child,
            dir,
            port,
            binary,
            serial: false,
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(broker);
            }
            if let Ok(Some(status)) = broker.child.try_wait() {
                return Err(format!("tansu exited with {status}: {}", broker.log()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "tansu did not listen on {addr} within 30 s: {}",
                    broker.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `host:port`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What the broker wrote to its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default()
    }

    /// Creates a topic with `partitions` partitions (tansu does not create topics on demand).
    ///
    /// # Panics
    /// If tansu refuses.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(&self.binary)
            .current_dir(&self.dir)
            .env("RUST_LOG", "warn")
            .args([
                "topic",
                "create",
                name,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .output()
            .expect("run tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create {name} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Produces `n` records to `topic` and waits until the broker has them all. `record(i)` gives
    /// record `i`'s key and value; records with the same key land in the same partition.
    ///
    /// # Panics
    /// If a record is not acknowledged within 60 s.
    pub fn produce(&self, topic: &str, n: u64, record: impl Fn(u64) -> (Vec<u8>, Vec<u8>)) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .expect("create a producer");
        for i in 0..n {
            let (key, value) = record(i);
            let mut r = BaseRecord::to(topic).key(&key).payload(&value);
            loop {
                match producer.send(r) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        producer.poll(Duration::from_millis(10));
                        r = back;
                    }
                }
            }
        }
        producer
            .flush(Duration::from_secs(60))
            .expect("the broker acknowledged every record");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.serial {
            give_slot();
        }
    }
}
