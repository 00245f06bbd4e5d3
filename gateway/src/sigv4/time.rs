//! Request timestamps: the ISO 8601 basic form SigV4 signs (`20150830T123600Z`) and the
//! HTTP `Date` form some clients send instead. Pure: no clock is read here.

/// A request time: seconds since the Unix epoch and the `YYYYMMDDTHHMMSSZ` form that
/// goes into the string to sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmzTime {
    unix: i64,
    iso: [u8; 16],
}

impl AmzTime {
    /// Parses `YYYYMMDDTHHMMSSZ`.
    pub fn parse_iso(s: &str) -> Option<Self> {
        let b: &[u8; 16] = s.as_bytes().try_into().ok()?;
        if b[8] != b'T' || b[15] != b'Z' {
            return None;
        }
        let year = digits(&b[0..4])?;
        let month = digits(&b[4..6])?;
        let day = digits(&b[6..8])?;
        let hour = digits(&b[9..11])?;
        let minute = digits(&b[11..13])?;
        let second = digits(&b[13..15])?;
        let unix = to_unix(year, month, day, hour, minute, second)?;
        Some(Self { unix, iso: *b })
    }

    /// Parses an HTTP date (`Sun, 30 Aug 2015 12:36:00 GMT`, RFC 9110 IMF-fixdate) or,
    /// as some signers send in `Date`, the ISO basic form.
    pub fn parse_http_date(s: &str) -> Option<Self> {
        if let Some(t) = Self::parse_iso(s) {
            return Some(t);
        }
        let b = s.as_bytes();
        // "Sun, 30 Aug 2015 12:36:00 GMT" is exactly 29 bytes.
        let b: &[u8; 29] = b.try_into().ok()?;
        if &b[3..5] != b", "
            || b[7] != b' '
            || b[11] != b' '
            || b[16] != b' '
            || &b[25..] != b" GMT"
        {
            return None;
        }
        if b[19] != b':' || b[22] != b':' {
            return None;
        }
        let day = digits(&b[5..7])?;
        const MONTHS: [&[u8; 3]; 12] = [
            b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
            b"Dec",
        ];
        let month = MONTHS.iter().position(|m| m[..] == b[8..11])? as u32 + 1;
        let year = digits(&b[12..16])?;
        let hour = digits(&b[17..19])?;
        let minute = digits(&b[20..22])?;
        let second = digits(&b[23..25])?;
        let unix = to_unix(year, month, day, hour, minute, second)?;
        Some(Self::from_unix(unix))
    }

    /// The time at `unix` seconds, for building expected values in tests and signers.
    pub fn from_unix(unix: i64) -> Self {
        let days = unix.div_euclid(86_400);
        let secs = unix.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let mut iso = [0u8; 16];
        write_digits(&mut iso[0..4], y.rem_euclid(10_000) as u32);
        write_digits(&mut iso[4..6], m);
        write_digits(&mut iso[6..8], d);
        iso[8] = b'T';
        write_digits(&mut iso[9..11], (secs / 3600) as u32);
        write_digits(&mut iso[11..13], (secs / 60 % 60) as u32);
        write_digits(&mut iso[13..15], (secs % 60) as u32);
        iso[15] = b'Z';
        Self { unix, iso }
    }

    /// Seconds since the Unix epoch.
    pub fn unix(&self) -> i64 {
        self.unix
    }

    /// `YYYYMMDDTHHMMSSZ`.
    pub fn iso(&self) -> &str {
        // Built only from ASCII digits and letters.
        std::str::from_utf8(&self.iso).unwrap_or("")
    }

    /// `YYYYMMDD`, the date a credential scope must carry.
    pub fn date(&self) -> &str {
        self.iso().get(..8).unwrap_or("")
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn write_digits(out: &mut [u8], mut v: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn to_unix(year: u32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<i64> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // 60 allows a leap second, as ISO 8601 does.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    Some(days * 86_400 + i64::from(hour * 3600 + minute * 60 + second))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days: exact for the proleptic Gregorian
// calendar, no tables.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trip() {
        let t = AmzTime::parse_iso("20150830T123600Z").unwrap();
        assert_eq!(t.unix(), 1_440_938_160);
        assert_eq!(AmzTime::from_unix(t.unix()), t);
        assert_eq!(t.date(), "20150830");
    }

    #[test]
    fn http_date() {
        let t = AmzTime::parse_http_date("Sun, 30 Aug 2015 12:36:00 GMT").unwrap();
        assert_eq!(t.iso(), "20150830T123600Z");
        assert_eq!(AmzTime::parse_http_date("20150830T123600Z").unwrap(), t);
    }

    #[test]
    fn rejects_bad_dates() {
        for s in [
            "20150230T123600Z",
            "20151301T000000Z",
            "20150830T246000Z",
            "2015083OT123600Z",
            "20150830 123600Z",
            "",
            "ሴሴሴሴሴ",
        ] {
            assert!(AmzTime::parse_iso(s).is_none(), "{s}");
        }
        assert!(AmzTime::parse_http_date("Sun, 30 Foo 2015 12:36:00 GMT").is_none());
        assert!(AmzTime::parse_iso("20160229T000000Z").is_some());
    }

    #[test]
    fn every_day_round_trips() {
        for day in (-1000..40_000).map(|d: i64| d * 86_400 + 3_723) {
            let t = AmzTime::from_unix(day);
            assert_eq!(AmzTime::parse_iso(t.iso()).unwrap().unix(), day);
        }
    }
}
