/** systemd OnCalendar expressions, checked at synthesis so that a timer never fails to load on a server. */

const CALENDAR_SHORTHANDS = ["minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually", "quarterly", "semiannually"];
const WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/** One field of a calendar expression: `*`, or a list of `n`, `a..b` (a < b), `n/step`, `a..b/step`. */
function isCalendarField(text: string, field: { min: number; max: number; digits: RegExp; step: boolean }): boolean {
  if (text === "*") return true;
  return text.split(",").every((item) => {
    const match = /^([0-9]+)(?:\.\.([0-9]+))?(?:\/([0-9]+))?$/.exec(item);
    if (!match) return false;
    const [, from, to, step] = match;
    if (![from, to ?? from].every((n) => field.digits.test(n) && Number(n) >= field.min && Number(n) <= field.max)) return false;
    // systemd refuses some empty ranges ("00:00:10..10"), a step of 0, and a first repetition past the field's end.
    if (to !== undefined && Number(to) <= Number(from)) return false;
    return step === undefined || (field.step && /^[1-9][0-9]?$/.test(step) && Number(from) + Number(step) <= field.max);
  });
}

const TWO_DIGITS = /^[0-9]{1,2}$/;
const CALENDAR_FIELDS = {
  year: { min: 1970, max: 2199, digits: /^[0-9]{4}$/, step: false },
  month: { min: 1, max: 12, digits: TWO_DIGITS, step: true },
  day: { min: 1, max: 31, digits: TWO_DIGITS, step: true },
  lastDays: { min: 1, max: 28, digits: TWO_DIGITS, step: false },
  hour: { min: 0, max: 23, digits: TWO_DIGITS, step: true },
  minute: { min: 0, max: 59, digits: TWO_DIGITS, step: true },
  second: { min: 0, max: 59, digits: TWO_DIGITS, step: true },
};

function isWeekdays(text: string): boolean {
  const day = (name: string) => WEEKDAYS.findIndex((d) => d === name.toLowerCase() || d.slice(0, 3) === name.toLowerCase());
  return text.split(",").every((item) => {
    const [from, to, ...rest] = item.split("..");
    if (rest.length > 0 || day(from) < 0) return false;
    return to === undefined || day(to) >= day(from);
  });
}

/** `[YYYY-]MM-DD`, or `[YYYY-]MM~DD` (days counted from the end of the month: one day or one range; systemd 252 mis-parses some lists). */
function isCalendarDate(text: string): boolean {
  const match = /^(?:([^-~]+)-)?([^-~]+)([-~])([^-~]+)$/.exec(text);
  if (!match) return false;
  const [, year, month, separator, day] = match;
  return (
    (year === undefined || isCalendarField(year, CALENDAR_FIELDS.year)) &&
    isCalendarField(month, CALENDAR_FIELDS.month) &&
    (separator === "~" ? !day.includes(",") && isCalendarField(day, CALENDAR_FIELDS.lastDays) : isCalendarField(day, CALENDAR_FIELDS.day))
  );
}

/** `HH:MM` or `HH:MM:SS`. */
function isCalendarTime(text: string): boolean {
  const [hour, minute, second, ...rest] = text.split(":");
  return (
    minute !== undefined &&
    rest.length === 0 &&
    isCalendarField(hour, CALENDAR_FIELDS.hour) &&
    isCalendarField(minute, CALENDAR_FIELDS.minute) &&
    (second === undefined || isCalendarField(second, CALENDAR_FIELDS.second))
  );
}

/**
 * A systemd OnCalendar expression in the forms systemd.time(7) documents: a shorthand (`daily`, …) or
 * `[weekdays] [[YYYY-]MM-DD] [HH:MM[:SS]]` with `*`, lists, ranges and repetitions, each optionally followed
 * by `UTC` (the server's time zone either way). A subset of what systemd accepts (the tests check every accepted
 * form with systemd-analyze), so a timer never fails to load on the server.
 */
export function isOnCalendar(value: string): boolean {
  const tokens = value.split(" ");
  if (tokens.some((t) => t === "")) return false;
  let i = 0;
  if (CALENDAR_SHORTHANDS.includes(tokens[0].toLowerCase())) i = 1;
  else {
    if (isWeekdays(tokens[i])) i++;
    if (i < tokens.length && isCalendarDate(tokens[i])) i++;
    if (i < tokens.length && isCalendarTime(tokens[i])) i++;
    if (i === 0) return false;
  }
  // The server's own zone. systemd 252 parses other zones but fails to schedule some dates in them
  // ("*-1/5-10 Europe/Berlin": "Resource deadlock avoided"), so they are not offered.
  if (tokens[i] === "UTC") i++;
  return i === tokens.length;
}
