"""Built-in plugin: the reference web UI's screens and menus, on the same hooks plugins use.

A deployment or plugin adds a screen the same way (see docs/guide/screens.md): return a
:class:`~crmkit.web.contributions.Screen` from ``crmkit_register_screens`` and a
:class:`~crmkit.web.contributions.MenuItem` pointing at it from
``crmkit_register_menu_items``.  A screen registered under a name used here replaces the
core's (``home``, say).
"""

from __future__ import annotations

from crmkit.plugins import hookimpl
from crmkit.web.contributions import MenuItem, Route, Screen

# Who may open the administration and import screens is a cell of the permission table
# (docs/concepts/access.md), never a role's name: the admin role has every cell through its
# ``* / *`` row, and a deployment hands one of these powers to another role by granting it.
USERS = ("user", "update")
PERMISSIONS = ("permission", "read")
TEAMS = ("team", "update")
FIELDS = ("field_definition", "create")
AUDIT = ("audit_log", "read")
#: importing clients; scope ``all`` also reaches every user's import runs
IMPORT = ("party", "import")
#: the whole-base duplicate report: merging what it finds deletes the duplicates
MERGE = ("party", "delete")


@hookimpl
def crmkit_register_screens() -> list[Screen]:
    from crmkit.web.screens import (
        admin,
        boards,
        calendar,
        card,
        clientbase,
        home,
        inbox,
        lists,
        notifications,
        profile,
        records,
        reports,
        tasks,
        templates,
    )
    from crmkit.web.screens import clientbase_groups as cbg

    def post(name: str, path: str, endpoint, title: str = "", roles=()) -> Screen:  # type: ignore[no-untyped-def]
        return Screen(name, path, title or name, endpoint, roles=roles, methods=("POST",))

    return [
        Screen("start", "/", "Start", home.start),
        Screen("home", "/home", "Workspace", home.workspace),
        # lists of every entity
        Screen("list", "/lists/{entity}", "List", lists.list_page),
        post("list_bulk", "/lists/{entity}/bulk", lists.bulk),
        post("list_view_save", "/lists/{entity}/views", lists.save_view),
        post("list_view_delete", "/lists/{entity}/views/{view_id:id}/delete", lists.delete_view),
        # the client card
        Screen("client_new", "/clients/new", "New client", card.new, methods=("GET", "POST")),
        Screen(
            "screening",
            "/screening",
            "Check for duplicates",
            clientbase.screening_page,
            permission=("party", "create"),
        ),
        Screen("groups", "/groups", "Groups", cbg.groups_page, methods=("GET", "POST")),
        Screen("group", "/groups/{group_id:id}", "Group", cbg.group_page),
        post("group_action", "/groups/{group_id:id}/action", cbg.group_action, "Group"),
        Screen(
            "group_export", "/groups/{group_id:id}/export.{fmt:str}", "Export", cbg.group_export
        ),
        Screen("clients_export", "/lists/party/export.{fmt:str}", "Export", cbg.list_export),
        Screen(
            "import",
            "/import",
            "Import clients",
            cbg.import_page,
            methods=("GET", "POST"),
            permission=IMPORT,
        ),
        Screen(
            "import_run",
            "/import/{run_id:id}",
            "Import clients",
            cbg.import_run_page,
            methods=("GET", "POST"),
            permission=IMPORT,
        ),
        Screen(
            "import_progress",
            "/import/{run_id:id}/progress",
            "Import",
            cbg.import_progress,
            permission=IMPORT,
        ),
        Screen(
            "import_errors",
            "/import/{run_id:id}/errors.csv",
            "Import",
            cbg.import_errors,
            permission=IMPORT,
        ),
        Screen(
            "client_merge",
            "/clients/{party_id:id}/merge",
            "Merge duplicates",
            clientbase.merge_page,
            methods=("GET", "POST"),
        ),
        Screen(
            "screening_candidates",
            "/screening/candidates",
            "Possible duplicates",
            clientbase.screening_candidates,
            permission=("party", "create"),
        ),
        Screen("client", "/clients/{party_id:id}", "Client", card.card),
        Screen(
            "client_edit",
            "/clients/{party_id:id}/edit",
            "Edit",
            card.edit,
            methods=("GET", "POST"),
        ),
        Screen("client_timeline", "/clients/{party_id:id}/timeline", "Timeline", card.timeline),
        post("client_note", "/clients/{party_id:id}/notes", card.add_note),
        post("client_call", "/clients/{party_id:id}/calls", card.add_call),
        post("client_contact", "/clients/{party_id:id}/contacts", card.add_contact),
        post(
            "client_contact_delete",
            "/clients/{party_id:id}/contacts/{contact_id:id}/delete",
            card.remove_contact,
        ),
        post("client_file", "/clients/{party_id:id}/files", card.upload),
        post("client_task", "/clients/{party_id:id}/tasks", card.add_task),
        post("client_reminder", "/clients/{party_id:id}/reminders", card.add_reminder),
        post("client_deal", "/clients/{party_id:id}/deals", card.add_deal),
        post("client_group", "/clients/{party_id:id}/groups", card.add_group),
        post("client_tags", "/clients/{party_id:id}/tags", card.set_tags),
        post("note_pin", "/notes/{activity_id:id}/pin", card.pin_note),
        Screen("file", "/files/{attachment_id:id}", "File", card.download),
        # any record, and stage moves with their small form
        Screen("record", "/records/{entity}/{record_id:id}", "Record", records.record_page),
        Screen(
            "record_move",
            "/records/{entity}/{record_id:id}/move",
            "Move",
            records.move,
            methods=("GET", "POST"),
        ),
        # boards
        Screen("boards", "/boards", "Boards", boards.index),
        Screen("board", "/boards/{pipeline}", "Board", boards.board),
        post("board_move", "/boards/{pipeline}/move", boards.move),
        # the contact center
        Screen("inbox", "/inbox", "Contact center", inbox.inbox),
        Screen("inbox_conversation", "/inbox/{conversation_id:id}", "Conversation", inbox.inbox),
        post("inbox_act", "/inbox/{conversation_id:id}/act", inbox.act),
        # tasks
        Screen("tasks", "/tasks", "Tasks", tasks.tasks_page),
        post("task_new", "/tasks/new", tasks.create),
        post("task_status", "/tasks/{task_id:id}/status", tasks.set_status),
        post("reminder_done", "/reminders/{reminder_id:id}/done", tasks.reminder_done),
        # calendar
        Screen("calendar", "/calendar", "Calendar", calendar.calendar_page),
        Screen("calendar_events", "/calendar/events", "Events", calendar.events),
        post("calendar_new", "/calendar/new", calendar.create),
        post(
            "calendar_reschedule", "/calendar/events/{event_id:id}/reschedule", calendar.reschedule
        ),
        # notifications and the profile
        Screen("notifications", "/notifications", "Notifications", notifications.page),
        post("notifications_read", "/notifications/read", notifications.mark_read),
        Screen("profile", "/profile", "Profile", profile.page, methods=("GET", "POST")),
        post("profile_password", "/profile/password", profile.password),
        post("profile_feed", "/profile/feed", profile.renew_feed),
        post("profile_notifications", "/profile/notifications", profile.forwarding),
        post("profile_token_new", "/profile/tokens", profile.create_token),
        post("profile_token_revoke", "/profile/tokens/{token_id:id}/revoke", profile.revoke_token),
        # message templates
        Screen("templates", "/templates", "Message templates", templates.index),
        post("template_preview", "/templates/preview", templates.preview),
        Screen(
            "template_edit",
            "/templates/{template_id}",
            "Template",
            templates.edit,
            methods=("GET", "POST"),
        ),
        # reports (each limited to its roles and entity)
        Screen("reports", "/reports", "Reports", reports.index),
        Screen("report", "/reports/{name}", "Report", reports.report_page),
        Screen("report_export", "/reports/{name}/export.{format}", "Export", reports.download),
        # administration
        Screen("admin", "/admin", "Administration", admin.index, permission=PERMISSIONS),
        Screen(
            "admin_users",
            "/admin/users",
            "Users",
            admin.users,
            permission=USERS,
            methods=("GET", "POST"),
        ),
        Screen(
            "admin_user",
            "/admin/users/{user_id:id}",
            "User",
            admin.user,
            permission=USERS,
            methods=("GET", "POST"),
        ),
        Screen(
            "admin_permissions",
            "/admin/permissions",
            "Roles and permissions",
            admin.permissions,
            permission=PERMISSIONS,
            methods=("GET", "POST"),
        ),
        Screen(
            "admin_teams",
            "/admin/teams",
            "Teams",
            admin.teams,
            permission=TEAMS,
            methods=("GET", "POST"),
        ),
        Screen(
            "admin_fields",
            "/admin/fields",
            "Custom fields",
            admin.fields,
            permission=FIELDS,
            methods=("GET", "POST"),
        ),
        Screen(
            "admin_pipelines",
            "/admin/pipelines",
            "Pipelines",
            admin.pipelines,
            permission=PERMISSIONS,
        ),
        Screen("admin_audit", "/admin/audit", "Audit log", admin.audit, permission=AUDIT),
        Screen(
            "admin_duplicates",
            "/admin/duplicates",
            "Duplicate report",
            clientbase.duplicates_page,
            permission=MERGE,
            methods=("GET", "POST"),
        ),
    ]


@hookimpl
def crmkit_register_menu_items() -> list[MenuItem]:
    return [
        MenuItem("Workspace", "home", roles=("agent", "manager"), order=10, icon="🏠"),
        MenuItem("Clients", "/lists/party", order=20, icon="👥"),
        MenuItem("Check for duplicates", "screening", order=25, icon="🔎"),
        MenuItem("Groups", "groups", order=26, icon="🗂"),
        MenuItem("Import clients", "import", order=27, icon="⇪"),
        MenuItem("Deals", "/lists/deal", order=30, icon="💼"),
        MenuItem("Boards", "boards", order=40, icon="▦"),
        MenuItem("Tasks", "tasks", order=50, icon="✔", permission=("task", "read")),
        MenuItem(
            "Contact center", "inbox", order=55, icon="💬", permission=("conversation", "read")
        ),
        MenuItem(
            "Calendar", "calendar", order=60, icon="📅", permission=("calendar_event", "read")
        ),
        MenuItem(
            "Message templates",
            "templates",
            order=70,
            icon="✉",
            permission=("message_template", "update"),
        ),
        MenuItem("Reports", "reports", order=80, icon="📊"),
        MenuItem("Administration", "admin", order=90, icon="⚙"),
    ]


@hookimpl
def crmkit_register_routes() -> list[Route]:
    from crmkit.web.screens import calendar

    return [Route("/ical/{token}.ics", calendar.ical_feed, name="ical_feed", public=True)]
