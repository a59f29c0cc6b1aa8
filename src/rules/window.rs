//! `herald.in_window("22:00-07:00", {weekdays = {"sat", "sun"}})`: is a local time inside a daily
//! window? Windows may cross midnight; `24:00` may end one. Weekdays name the day a window *starts*, so
//! `"22:00-07:00"` on `{"fri"}` covers Friday 22:00 to Saturday 07:00.

use jiff::civil::{DateTime, Weekday};

/// A parsed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    start: u16,
    end: u16,
    /// Indexed by `Weekday::to_monday_zero_offset`; `None` = every day.
    days: Option<[bool; 7]>,
}

impl Window {
    /// Parses `"HH:MM-HH:MM"` and optional weekday names (`mon` … `sun`, or full names).
    pub fn parse(spec: &str, weekdays: Option<&[String]>) -> Result<Window, String> {
        let (a, b) = spec
            .split_once('-')
            .ok_or_else(|| format!("window `{spec}` is not \"HH:MM-HH:MM\""))?;
        let start = minutes(a.trim(), spec)?;
        let end = minutes(b.trim(), spec)?;
        if start == end {
            return Err(format!("window `{spec}` starts and ends at the same time"));
        }
        if start == 24 * 60 {
            return Err(format!("window `{spec}` cannot start at 24:00"));
        }
        let days = match weekdays {
            None => None,
            Some(names) => {
                let mut days = [false; 7];
                for name in names {
                    days[weekday(name)?.to_monday_zero_offset() as usize] = true;
                }
                Some(days)
            }
        };
        Ok(Window { start, end, days })
    }

    /// Whether `local` falls inside the window.
    pub fn contains(&self, local: DateTime) -> bool {
        let now = (local.hour() as u16) * 60 + local.minute() as u16;
        let today = local.weekday();
        let started_on = if self.start < self.end {
            (self.start <= now && now < self.end).then_some(today)
        } else if now >= self.start {
            Some(today)
        } else if now < self.end {
            Some(today.previous())
        } else {
            None
        };
        match (started_on, self.days) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(day), Some(days)) => days[day.to_monday_zero_offset() as usize],
        }
    }
}

fn minutes(hhmm: &str, spec: &str) -> Result<u16, String> {
    let bad = || format!("window `{spec}`: `{hhmm}` is not a time HH:MM");
    let (h, m) = hhmm.split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn weekday(name: &str) -> Result<Weekday, String> {
    let day = match name.to_ascii_lowercase().get(..3) {
        Some("mon") => Weekday::Monday,
        Some("tue") => Weekday::Tuesday,
        Some("wed") => Weekday::Wednesday,
        Some("thu") => Weekday::Thursday,
        Some("fri") => Weekday::Friday,
        Some("sat") => Weekday::Saturday,
        Some("sun") => Weekday::Sunday,
        _ => return Err(format!("`{name}` is not a weekday (mon, tue, … sun)")),
    };
    Ok(day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn at(day: i8, h: i8, m: i8) -> DateTime {
        // December 2026: the 4th is a Friday.
        date(2026, 12, day).at(h, m, 0, 0)
    }

    #[test]
    fn a_window_that_crosses_midnight() {
        let w = Window::parse("22:00-07:00", None).unwrap();
        assert!(w.contains(at(4, 23, 30)));
        assert!(w.contains(at(5, 0, 0)));
        assert!(w.contains(at(5, 6, 59)));
        assert!(!w.contains(at(5, 7, 0)));
        assert!(!w.contains(at(4, 21, 59)));
        assert!(w.contains(at(4, 22, 0)));
    }

    #[test]
    fn a_daytime_window_and_a_whole_day() {
        let w = Window::parse("09:00-17:30", None).unwrap();
        assert!(
            w.contains(at(4, 17, 29)) && !w.contains(at(4, 17, 30)) && !w.contains(at(4, 8, 59))
        );
        let all = Window::parse("00:00-24:00", None).unwrap();
        assert!(all.contains(at(4, 0, 0)) && all.contains(at(4, 23, 59)));
    }

    #[test]
    fn weekdays_name_the_day_the_window_starts() {
        let fri_night = Window::parse("22:00-07:00", Some(&["fri".into()])).unwrap();
        assert!(fri_night.contains(at(4, 23, 0)), "Friday 23:00");
        assert!(
            fri_night.contains(at(5, 6, 0)),
            "Saturday 06:00 still belongs to Friday night"
        );
        assert!(
            !fri_night.contains(at(5, 23, 0)),
            "Saturday night is not Friday"
        );
        assert!(
            !fri_night.contains(at(4, 6, 0)),
            "Friday 06:00 belongs to Thursday night"
        );
        let weekend =
            Window::parse("00:00-24:00", Some(&["Saturday".into(), "sun".into()])).unwrap();
        assert!(
            weekend.contains(at(5, 12, 0))
                && weekend.contains(at(6, 12, 0))
                && !weekend.contains(at(7, 12, 0))
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        assert!(
            Window::parse("22-07", None)
                .unwrap_err()
                .contains("not a time")
        );
        assert!(Window::parse("25:00-07:00", None).is_err());
        assert!(
            Window::parse("07:00-07:00", None)
                .unwrap_err()
                .contains("same time")
        );
        assert!(
            Window::parse("22:00-07:00", Some(&["funday".into()]))
                .unwrap_err()
                .contains("not a weekday")
        );
    }
}
