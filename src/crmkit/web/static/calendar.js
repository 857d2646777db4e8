// The calendar page: FullCalendar with day, week and month views; dragging or resizing an
// event reschedules it on the server, and a refusal (a booked resource, an event someone
// else changed meanwhile) puts it back.
// It runs in the user's time zone (data-timezone), not the browser's: the bundle has no
// time-zone plugin, so the server sends every time with that zone's offset and reads the
// times sent back (the range asked for, a dropped event) without an offset in that zone;
// "now" (today, the red line) is the zone's wall clock, from the browser's Intl.
(function () {
  "use strict";
  const element = document.getElementById("calendar");
  if (!element || !window.FullCalendar) return;
  const narrow = window.matchMedia("(max-width: 760px)").matches;
  const zone = element.dataset.timezone || "local";
  // the wall-clock time in the user's zone, "2026-03-02T01:05:00" (read in that zone)
  function wallNow() {
    const parts = {};
    new Intl.DateTimeFormat("en-CA", {
      timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    }).formatToParts(new Date()).forEach((p) => { parts[p.type] = p.value; });
    return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}:${parts.second}`;
  }
  const calendar = new window.FullCalendar.Calendar(element, {
    timeZone: zone,
    now: zone === "local" ? undefined : wallNow,
    locale: element.dataset.language,
    firstDay: Number(element.dataset.firstDay || 1),
    initialView: narrow ? "timeGridDay" : "timeGridWeek",
    headerToolbar: { left: "prev,next today", center: "title", right: "timeGridDay,timeGridWeek,dayGridMonth" },
    nowIndicator: true,
    editable: true,
    slotMinTime: "07:00:00",
    slotMaxTime: "21:00:00",
    height: "auto",
    events: element.dataset.events,
    eventDrop: reschedule,
    eventResize: reschedule,
  });
  // Without the plugin a named zone is "UTC-coerced": a drop at 15:00 is a Date whose UTC
  // fields say 15:00, so toISOString() would label the wall time UTC.  formatIso writes it
  // with no offset (the browser's offset in "local"), and the server reads it in the zone.
  // The version the event was drawn at comes back, so a drag never overwrites a change made
  // meanwhile by someone else.
  async function reschedule(info) {
    const event = info.event;
    const { status, body } = await window.crmkit.post(
      "/calendar/events/" + event.id + "/reschedule",
      {
        start: calendar.formatIso(event.start),
        end: event.end ? calendar.formatIso(event.end) : null,
        version: event.extendedProps.version,
      });
    if (status !== 200) {
      info.revert();
      window.crmkit.toast(body.reason || "refused", "error");
    }
    calendar.refetchEvents();  // as it is now: moved, or as someone else left it
  }
  calendar.render();
  window.crmkit.calendar = calendar;
})();
