import Foundation

/// A standard 5-field cron expression (`minute hour day-of-month month day-of-week`),
/// parsed once: `*`, numbers, ranges `a-b`, steps `*/n`, `a-b/n` and `a/n` (from a to the
/// field's end), comma lists, month and weekday names (`JAN`–`DEC`, `SUN`–`SAT`, any
/// case; 7 is Sunday too) and the macros `@yearly` (`@annually`), `@monthly`, `@weekly`,
/// `@daily` (`@midnight`) and `@hourly`.
///
/// Day-of-month and day-of-week follow Vixie cron, not Pylon (which ANDs them): when both
/// are restricted (neither starts with `*`) a day matches if either does.
///
/// Times are wall-clock times in the task's time zone (`next(after:in:)`). Across daylight
/// saving changes: a wall time that a change skips fires once, at the first instant after
/// the gap; a wall time that occurs twice fires at its first occurrence only, unless the
/// hour field is a wildcard (`*`, `*/2`), whose task runs on every real hour as before.
package struct CronExpression: Sendable, Equatable {
    package let text: String
    let minutes: UInt64
    let hours: UInt64
    let days: UInt64
    let months: UInt64
    let weekdays: UInt64
    let daysRestricted: Bool
    let weekdaysRestricted: Bool
    let hoursWildcard: Bool

    static let macros: [String: String] = [
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
    ]
    static let monthNames = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    static let dayNames = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]

    /// Why an expression was refused, saying which field and what is allowed.
    package struct ParseError: Error, Sendable, CustomStringConvertible {
        package let message: String
        package var description: String { message }
    }

    package init(_ text: String) throws(ParseError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        self.text = trimmed
        var source = trimmed
        if trimmed.hasPrefix("@") {
            guard let m = Self.macros[trimmed.lowercased()] else {
                throw ParseError(message: "unknown macro \"\(trimmed)\"; use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly")
            }
            source = m
        }
        guard source.utf8.count <= 256 else { throw ParseError(message: "the expression is longer than 256 characters") }
        let fields = source.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard fields.count == 5 else {
            throw ParseError(message: "\"\(trimmed)\" has \(fields.count) field(s); give 5: minute hour day-of-month month day-of-week (e.g. \"*/15 9-17 * * MON-FRI\")")
        }
        minutes = try Self.field(fields[0], "minute", 0, 59, names: [])
        hours = try Self.field(fields[1], "hour", 0, 23, names: [])
        days = try Self.field(fields[2], "day-of-month", 1, 31, names: [])
        months = try Self.field(fields[3], "month", 1, 12, names: Self.monthNames, nameBase: 1)
        var dow = try Self.field(fields[4], "day-of-week", 0, 7, names: Self.dayNames)
        if dow & (1 << 7) != 0 { dow = (dow | 1) & ~(1 << 7) }
        weekdays = dow
        daysRestricted = !fields[2].hasPrefix("*")
        weekdaysRestricted = !fields[4].hasPrefix("*")
        hoursWildcard = fields[1].hasPrefix("*")
    }

    /// One field as a bit set of its allowed values.
    static func field(_ text: String, _ name: String, _ lo: Int, _ hi: Int, names: [String], nameBase: Int = 0) throws(ParseError) -> UInt64 {
        var bits: UInt64 = 0
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = item.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count <= 2, !parts[0].isEmpty else {
                throw ParseError(message: "\(name) field \"\(text)\": \"\(item)\" is not a value, a range or a step")
            }
            var step = 1
            if parts.count == 2 {
                guard let s = Int(parts[1]), s >= 1, s <= hi - lo + 1 else {
                    throw ParseError(message: "\(name) field \"\(text)\": the step after / must be a number from 1 to \(hi - lo + 1)")
                }
                step = s
            }
            var first = lo, last = hi
            if parts[0] != "*" {
                let bounds = parts[0].split(separator: "-", omittingEmptySubsequences: false)
                guard bounds.count <= 2 else { throw ParseError(message: "\(name) field \"\(text)\": \"\(parts[0])\" is not a range a-b") }
                first = try value(String(bounds[0]), name, lo, hi, names: names, nameBase: nameBase)
                if bounds.count == 2 {
                    last = try value(String(bounds[1]), name, lo, hi, names: names, nameBase: nameBase)
                    guard first <= last else {
                        throw ParseError(message: "\(name) field \"\(text)\": the range \(parts[0]) runs backwards; write it low-high")
                    }
                } else if parts.count == 1 {
                    last = first
                }
            }
            for v in stride(from: first, through: last, by: step) { bits |= 1 << UInt64(v) }
        }
        return bits
    }

    static func value(_ text: String, _ name: String, _ lo: Int, _ hi: Int, names: [String], nameBase: Int) throws(ParseError) -> Int {
        if let i = names.firstIndex(of: text.uppercased()) { return i + nameBase }
        guard let n = Int(text), n >= lo, n <= hi else {
            let named = names.isEmpty ? "" : " or a name (\(names.first!)–\(names.last!))"
            throw ParseError(message: "\(name) field: \"\(text)\" is not a number from \(lo) to \(hi)\(named)")
        }
        return n
    }

    /// Whether the wall-clock minute `wall` (seconds since 1970 on a clock without a zone)
    /// matches.
    func matches(wall: Int64) -> Bool {
        let c = CivilTime(wall)
        guard minutes & (1 << UInt64(c.minute)) != 0, hours & (1 << UInt64(c.hour)) != 0,
              months & (1 << UInt64(c.month)) != 0 else { return false }
        return dayMatches(c)
    }

    func dayMatches(_ c: CivilTime) -> Bool {
        let d = days & (1 << UInt64(c.day)) != 0
        let w = weekdays & (1 << UInt64(c.weekday)) != 0
        return daysRestricted && weekdaysRestricted ? (d || w) : (d && w)
    }

    /// The first matching wall-clock minute after `wall`, skipping whole months, days and
    /// hours that cannot match; nil when none in the next eight years (`0 0 30 2 *`).
    func nextWall(after wall: Int64) -> Int64? {
        var t = (Self.floorDiv(wall, 60) + 1) * 60
        let limit = wall + 8 * 366 * 86_400
        while t <= limit {
            let c = CivilTime(t)
            if months & (1 << UInt64(c.month)) == 0 {
                t = CivilTime.wall(year: c.month == 12 ? c.year + 1 : c.year, month: c.month == 12 ? 1 : c.month + 1, day: 1)
            } else if !dayMatches(c) {
                t = CivilTime.wall(year: c.year, month: c.month, day: c.day) + 86_400
            } else if hours & (1 << UInt64(c.hour)) == 0 {
                t = Self.floorDiv(t, 3600) * 3600 + 3600
            } else if minutes & (1 << UInt64(c.minute)) == 0 {
                t += 60
            } else {
                return t
            }
        }
        return nil
    }

    /// The first occurrence strictly after `date` in `zone` (see the type's comment for
    /// daylight saving changes); nil when the expression never matches.
    package func next(after date: Date, in zone: TimeZone) -> Date? {
        let after = Int64(date.timeIntervalSince1970.rounded(.down))
        func offset(_ t: Int64) -> Int64 { Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(t)))) }
        // A wall time can occur after `after` even when it is earlier than `after`'s own
        // wall time (a clock set back): start a day's worth of wall time before.
        var wall = after + offset(after) - 86_400
        while let w = nextWall(after: wall) {
            wall = w
            if let real = realInstant(ofWall: w, after: after, offset: offset, zone: zone) {
                return Date(timeIntervalSince1970: TimeInterval(real))
            }
        }
        return nil
    }

    /// The real instant at which wall time `w` fires, if after `after`: its first
    /// occurrence (or, for a wildcard hour, any occurrence after `after`); the end of the
    /// gap when a clock change skips it.
    func realInstant(ofWall w: Int64, after: Int64, offset: (Int64) -> Int64, zone: TimeZone) -> Int64? {
        // The zone's offsets around this wall time (offsets stay within ±26 h).
        let probes = Set([offset(w - 93_600), offset(w + 93_600), offset(w - offset(w)), offset(w)])
        let occurrences = probes.map { w - $0 }.filter { offset($0) == w - $0 }.sorted()
        if occurrences.isEmpty {
            // Skipped by a change: the first instant after the gap.
            let early = probes.max()!
            guard let end = zone.nextDaylightSavingTimeTransition(after: Date(timeIntervalSince1970: TimeInterval(w - early - 1))) else { return nil }
            let t = Int64(end.timeIntervalSince1970.rounded(.down))
            return t > after ? t : nil
        }
        let allowed = hoursWildcard ? occurrences : [occurrences[0]]
        return allowed.first { $0 > after }
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }
}

/// A wall-clock time broken into fields, by integer arithmetic on the proleptic Gregorian
/// calendar (no zone, no Foundation calendar on the hot path).
struct CivilTime {
    let year: Int64, month: Int, day: Int, hour: Int, minute: Int
    /// 0 = Sunday.
    let weekday: Int

    init(_ wall: Int64) {
        let days = CronExpression.floorDiv(wall, 86_400)
        let secs = wall - days * 86_400
        hour = Int(secs / 3600)
        minute = Int(secs % 3600 / 60)
        weekday = Int(((days % 7) + 11) % 7) // 1970-01-01 was a Thursday (4)
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let m = Int(mp < 10 ? mp + 3 : mp - 9)
        day = Int(doy - (153 * mp + 2) / 5 + 1)
        month = m
        year = yoe + era * 400 + (m <= 2 ? 1 : 0)
    }

    /// Midnight of a date as wall seconds (days_from_civil).
    static func wall(year: Int64, month: Int, day: Int) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let m = Int64(month)
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return (era * 146_097 + doe - 719_468) * 86_400
    }
}
