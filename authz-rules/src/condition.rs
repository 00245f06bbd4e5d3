//! Optional rule conditions: source address ranges, principal tags and time
//! windows. All times are UTC Unix seconds, passed in by the caller.

use std::fmt;
use std::net::IpAddr;

/// An address range (`10.0.0.0/8`, `fd00::/8`, or a single address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX` or a bare address; host bits must be zero, so a
    /// typo like `10.1.2.3/8` is caught instead of silently widened.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {max}"))?,
        };
        let cidr = Cidr { addr, prefix };
        if cidr.network_bits(addr) != bits(addr) {
            let fixed = Cidr {
                addr: from_bits(addr, cidr.network_bits(addr)),
                prefix,
            };
            return Err(format!(
                "`{text}` has host bits set; did you mean `{fixed}`?"
            ));
        }
        Ok(cidr)
    }

    /// Is `ip` in the range? IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        self.network_bits(ip) == bits(self.addr)
    }

    fn network_bits(&self, ip: IpAddr) -> u128 {
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let host = width - u32::from(self.prefix);
        let mask = if host >= 128 { 0 } else { u128::MAX << host };
        bits(ip) & mask
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_bits(like: IpAddr, bits: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(u32::try_from(bits).unwrap_or(0).into()),
        IpAddr::V6(_) => IpAddr::V6(bits.into()),
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A principal tag condition: the tag `key` (case-insensitive, as in IAM) must
/// have one of `values` (case-sensitive).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TagCondition {
    /// Lower-cased tag key.
    pub key: Box<str>,
    /// Accepted values.
    pub values: Vec<Box<str>>,
}

/// When a rule applies, in UTC.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TimeWindow {
    /// Not before this instant (Unix seconds, inclusive).
    pub not_before: Option<i64>,
    /// Not after this instant (Unix seconds, exclusive).
    pub not_after: Option<i64>,
    /// Days of the week (bit 0 = Monday), if restricted.
    pub days: Option<u8>,
    /// Minutes since midnight: start inclusive, end exclusive; wraps past midnight
    /// when start > end.
    pub hours: Option<(u16, u16)>,
}

/// Day names for `days`, Monday first.
pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl TimeWindow {
    /// Does `now` fall in the window?
    pub fn contains(&self, now: i64) -> bool {
        if self.not_before.is_some_and(|t| now < t) || self.not_after.is_some_and(|t| now >= t) {
            return false;
        }
        let days = now.div_euclid(86_400);
        if let Some(mask) = self.days {
            // 1970-01-01 was a Thursday (index 3).
            let weekday = (days + 3).rem_euclid(7);
            if mask & (1 << weekday) == 0 {
                return false;
            }
        }
        if let Some((start, end)) = self.hours {
            let minute = i64::from(u16::try_from(now.rem_euclid(86_400) / 60).unwrap_or(0));
            let (start, end) = (i64::from(start), i64::from(end));
            let inside = if start <= end {
                start <= minute && minute < end
            } else {
                minute >= start || minute < end
            };
            if !inside {
                return false;
            }
        }
        true
    }

    /// Parses `HH:MM-HH:MM`.
    pub fn parse_hours(text: &str) -> Result<(u16, u16), String> {
        let err = || format!("`{text}` is not an hour range; write it as `08:00-18:00` (UTC)");
        let (a, b) = text.split_once('-').ok_or_else(err)?;
        let start = parse_hhmm(a.trim()).ok_or_else(err)?;
        let end = parse_hhmm(b.trim()).ok_or_else(err)?;
        if start == end {
            return Err(format!("`{text}` is an empty hour range"));
        }
        Ok((start, end))
    }

    /// Parses a day name (`mon` .. `sun`, any case).
    pub fn parse_day(text: &str) -> Result<u8, String> {
        const FULL: [&str; 7] = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        let lower = text.to_ascii_lowercase();
        DAYS.iter()
            .zip(FULL)
            .position(|(short, long)| lower == *short || lower == long)
            .map(|i| 1u8 << i)
            .ok_or_else(|| {
                format!("`{text}` is not a day; use mon, tue, wed, thu, fri, sat or sun")
            })
    }
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(t) = self.not_before {
            parts.push(format!("from {}", format_rfc3339(t)));
        }
        if let Some(t) = self.not_after {
            parts.push(format!("until {}", format_rfc3339(t)));
        }
        if let Some(mask) = self.days {
            let names: Vec<&str> = DAYS
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, d)| *d)
                .collect();
            parts.push(format!("on {}", names.join(",")));
        }
        if let Some((s, e)) = self.hours {
            parts.push(format!(
                "{:02}:{:02}-{:02}:{:02} UTC",
                s / 60,
                s % 60,
                e / 60,
                e % 60
            ));
        }
        f.write_str(&parts.join(" "))
    }
}

fn parse_hhmm(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    // 24:00 is allowed as an end of day.
    if (h < 24 && m < 60) || (h == 24 && m == 0) {
        Some(h * 60 + m)
    } else {
        None
    }
}

/// Parses an RFC 3339 UTC time (`2026-01-31T18:00:00Z`) or a date (`2026-01-31`,
/// midnight UTC) into Unix seconds.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let err = || {
        format!("`{text}` is not a UTC time; write it as `2026-01-31T18:00:00Z` or `2026-01-31`")
    };
    let (date, time) = match text.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut dp = date.splitn(3, '-');
    let (Some(y), Some(mo), Some(d)) = (dp.next(), dp.next(), dp.next()) else {
        return Err(err());
    };
    if y.len() != 4 || mo.len() != 2 || d.len() != 2 {
        return Err(err());
    }
    let y: i64 = y.parse().map_err(|_| err())?;
    let mo: u32 = mo.parse().map_err(|_| err())?;
    let d: u32 = d.parse().map_err(|_| err())?;
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return Err(err());
    }
    let mut secs = days_from_civil(y, mo, d) * 86_400;
    if let Some(t) = time {
        let t = t
            .strip_suffix('Z')
            .or_else(|| t.strip_suffix('z'))
            .or_else(|| t.strip_suffix("+00:00"))
            .ok_or_else(|| format!("`{text}`: times are UTC; end them with `Z`"))?;
        let mut tp = t.splitn(3, ':');
        let (Some(h), Some(mi), s) = (tp.next(), tp.next(), tp.next()) else {
            return Err(err());
        };
        let h: i64 = h.parse().map_err(|_| err())?;
        let mi: i64 = mi.parse().map_err(|_| err())?;
        let s: i64 = s.map_or(Ok(0), |s| s.parse()).map_err(|_| err())?;
        if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..61).contains(&s) {
            return Err(err());
        }
        secs += h * 3600 + mi * 60 + s;
    }
    Ok(secs)
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days-from-civil and its inverse.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("fd00::1".parse().unwrap()));
        assert!(
            Cidr::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        assert!(
            Cidr::parse("10.1.2.3/8")
                .unwrap_err()
                .contains("10.0.0.0/8")
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(
            Cidr::parse("127.0.0.1")
                .unwrap()
                .contains("127.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2026-11-22T08:00:00Z"), Ok(1_795_334_400));
        assert_eq!(parse_rfc3339("2026-11-22"), Ok(1_795_305_600));
        assert_eq!(format_rfc3339(1_795_334_400), "2026-11-22T08:00:00Z");
        assert!(parse_rfc3339("2026-02-30").is_err());
        assert!(parse_rfc3339("2026-01-01T10:00:00+01:00").is_err());
        // 2026-11-22 is a Sunday.
        let sunday_9am = 1_795_338_000;
        let weekdays = TimeWindow {
            days: Some(0b0011111),
            ..TimeWindow::default()
        };
        assert!(!weekdays.contains(sunday_9am));
        assert!(weekdays.contains(sunday_9am + 86_400));
        let office = TimeWindow {
            hours: Some(TimeWindow::parse_hours("08:00-18:00").unwrap()),
            ..TimeWindow::default()
        };
        assert!(office.contains(sunday_9am));
        assert!(!office.contains(sunday_9am - 2 * 3600));
        let night = TimeWindow {
            hours: Some(TimeWindow::parse_hours("22:00-06:00").unwrap()),
            ..TimeWindow::default()
        };
        assert!(night.contains(sunday_9am - 4 * 3600));
        assert!(!night.contains(sunday_9am));
        assert_eq!(TimeWindow::parse_day("Fri"), Ok(1 << 4));
        assert!(TimeWindow::parse_day("fry").is_err());
    }
}
