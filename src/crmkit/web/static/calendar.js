// The calendar page: FullCalendar with day, week and month views; dragging or resizing an
// event reschedules it on the server, and a refusal (a booked resource) puts it back.
(function () {
  "use strict";
  const element = document.getElementById("calendar");
  if (!element || !window.FullCalendar) return;
  const narrow = window.matchMedia("(max-width: 760px)").matches;
  const calendar = new window.FullCalendar.Calendar(element, {
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
