//! Small helpers shared by every stand-in: command-line flags in the upstream (pflag) style,
//! logging to stderr, RFC 3339 time, random names, SIGTERM.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Log one line to stderr (journald picks it up), prefixed with the stand-in's name.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        eprintln!("{}: {}", $crate::util::prog(), format!($($arg)*));
    }};
}

static PROG: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn set_prog(name: &str) {
    let _ = PROG.set(format!("{name} (kbin stand-in)"));
}

pub fn prog() -> &'static str {
    PROG.get().map(String::as_str).unwrap_or("kbin-standin")
}

/// Parsed command line. Upstream binaries take hundreds of flags; a stand-in reads the few it
/// needs and accepts the rest. `--flag=value` and `--flag value` both work for flags listed as
/// taking a value; an unknown `--flag` followed by a word that is not a flag takes it as its value
/// (pflag does the same for non-boolean flags), `--flag=value` is always unambiguous.
pub struct Flags {
    values: HashMap<String, String>,
    pub positional: Vec<String>,
}

impl Flags {
    pub fn parse(args: &[String], valued: &[&str]) -> Flags {
        let mut values = HashMap::new();
        let mut positional = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            if a == "--" {
                positional.extend(args[i + 1..].iter().cloned());
                break;
            }
            if let Some(body) = a.strip_prefix("--").or_else(|| a.strip_prefix('-').filter(|b| b.len() > 1)) {
                if let Some((k, v)) = body.split_once('=') {
                    values.insert(k.to_string(), v.to_string());
                } else {
                    let next_is_value = args.get(i + 1).is_some_and(|n| !n.starts_with('-'));
                    if valued.contains(&body) && next_is_value || (!valued.contains(&body) && next_is_value && !is_bool_like(body)) {
                        values.insert(body.to_string(), args[i + 1].clone());
                        i += 1;
                    } else {
                        values.insert(body.to_string(), "true".to_string());
                    }
                }
            } else {
                positional.push(a.clone());
            }
            i += 1;
        }
        Flags { values, positional }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn get_or<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.get(name).unwrap_or(default)
    }

    pub fn bool(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true") | Some("1"))
    }

    /// Upstream fails at start when a file named by one of these flags cannot be read; so does
    /// the stand-in, so that a file kbin forgot to push shows up as a failed unit.
    pub fn require_files(&self, names: &[&str]) {
        for n in names {
            if let Some(p) = self.get(n)
                && let Err(e) = std::fs::File::open(p) {
                    fatal(&format!("--{n}: open {p}: {e}"));
                }
        }
    }

    pub fn require(&self, name: &str) -> String {
        match self.get(name) {
            Some(v) => v.to_string(),
            None => fatal(&format!("--{name} is required")),
        }
    }
}

/// Flags that upstream defines as booleans and that a unit may give without a value.
fn is_bool_like(name: &str) -> bool {
    matches!(
        name,
        "kube-subnet-mgr" | "ip-masq" | "allow-privileged" | "leader-elect" | "allocate-node-cidrs" | "enable-aggregator-routing" | "client" | "version" | "help"
    )
}

pub fn fatal(msg: &str) -> ! {
    log!("fatal: {msg}");
    std::process::exit(1);
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 in UTC with seconds (Kubernetes `Time`).
pub fn rfc3339(secs: u64) -> String {
    let (y, mo, d) = civil((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

pub fn now_rfc3339() -> String {
    rfc3339(now_secs())
}

/// RFC 3339 with microseconds (Kubernetes `MicroTime`, used by Leases).
pub fn now_micro() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let base = rfc3339(d.as_secs());
    format!("{}.{:06}Z", base.trim_end_matches('Z'), d.subsec_micros())
}

/// Parses `2026-11-23T01:02:03Z`, `...03.123456Z` and `...03+00:00` to Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let (date, time) = s.split_once('T')?;
    let mut dp = date.split('-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    let (hms, offset) = if let Some(t) = time.strip_suffix('Z') {
        (t, 0i64)
    } else if let Some(pos) = time.rfind(['+', '-']) {
        let (t, off) = time.split_at(pos);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        (t, sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60))
    } else {
        (time, 0)
    };
    let hms = hms.split('.').next()?;
    let mut tp = hms.split(':');
    let h: i64 = tp.next()?.parse().ok()?;
    let mi: i64 = tp.next()?.parse().ok()?;
    let se: i64 = tp.next()?.parse().ok()?;
    let secs = days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + se - offset;
    u64::try_from(secs).ok()
}

/// Go-style duration: "40s", "5m", "1h30m", "500ms"; a bare number is seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if let Ok(n) = s.parse::<f64>() {
        return Some(Duration::from_secs_f64(n));
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let v: f64 = num.parse().ok()?;
        num.clear();
        total += v * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
    }
    if !num.is_empty() {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    use ring::rand::SecureRandom;
    let mut b = vec![0u8; n];
    ring::rand::SystemRandom::new().fill(&mut b).expect("system random");
    b
}

pub fn uuid4() -> String {
    let mut b = random_bytes(16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Random lower-case alphanumerics, as the apiserver appends to `generateName`.
pub fn random_suffix(n: usize) -> String {
    const A: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    random_bytes(n).iter().map(|b| A[*b as usize % A.len()] as char).collect()
}

unsafe extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
    fn _exit(code: i32) -> !;
}

extern "C" fn on_term(_: i32) {
    // Only async-signal-safe calls here. The stand-ins hold no state that needs flushing.
    unsafe { _exit(0) }
}

/// SIGTERM and SIGINT end the process at once with status 0, as a clean stop.
pub fn exit_cleanly_on_sigterm() {
    unsafe {
        signal(15, on_term as *const () as usize);
        signal(2, on_term as *const () as usize);
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

pub fn sleep(d: Duration) {
    std::thread::sleep(d)
}

/// The heartbeat period of the node agents: `KBIN_STANDIN_PERIOD` (seconds, fractions allowed),
/// default 5 s.
pub fn period() -> Duration {
    std::env::var("KBIN_STANDIN_PERIOD").ok().and_then(|v| v.parse::<f64>().ok()).filter(|v| *v > 0.0).map(Duration::from_secs_f64).unwrap_or(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trip() {
        for t in [0u64, 951_782_400, 1_795_000_000, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(parse_rfc3339("2000-02-29T01:00:00+01:00"), Some(951_782_400));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00.123456Z"), Some(951_782_400));
    }

    #[test]
    fn flags() {
        let a: Vec<String> = ["--config", "/x", "--kube-subnet-mgr", "--iface=1.2.3.4", "--ip-masq", "version", "--v=2"].iter().map(|s| s.to_string()).collect();
        let f = Flags::parse(&a, &["config"]);
        assert_eq!(f.get("config"), Some("/x"));
        assert!(f.bool("kube-subnet-mgr"));
        assert!(f.bool("ip-masq"));
        assert_eq!(f.get("iface"), Some("1.2.3.4"));
        assert_eq!(f.positional, vec!["version"]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("40s"), Some(Duration::from_secs(40)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("8760h0m0s"), Some(Duration::from_secs(8760 * 3600)));
    }
}
