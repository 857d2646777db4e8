// The calendar page: FullCalendar with day, week and month views; dragging or resizing an
// event reschedules it on the server, and a refusal (a booked resource) puts it back.
// It runs in the user's time zone (data-timezone), not the browser's: the bundle has no
// time-zone plugin, so the server sends every time with that zone's offset and reads the
// range asked for (sent without an offset) in that zone; "now" (today, the red line) is
// the zone's wall clock, from the browser's Intl.
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
  async function reschedule(info) {
    const { status, body } = await window.crmkit.post(
      "/calendar/events/" + info.event.id + "/reschedule",
      { start: info.event.start.toISOString(), end: info.event.end ? info.event.end.toISOString() : null });
    if (status !== 200) {
      info.revert();
      window.crmkit.toast(body.reason || "refused", "error");
    } else {
      calendar.refetchEvents();
    }
  }
  calendar.render();
  window.crmkit.calendar = calendar;
})();
