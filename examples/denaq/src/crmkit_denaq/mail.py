"""Mail templates for each stage, in Russian: nobody copy-pastes an offer again.

Seeded once (``crmkit init`` / ``crmkit db upgrade``); admins edit them at ``/templates``.
Each name starts with the stage it is meant for, and each template says so (``pipeline``,
``stage``): the card's mail panel chooses the template of the dealer's stage.
"""

from __future__ import annotations

from crmkit.services.message_templates import StarterTemplate
from crmkit_denaq.pipeline import NAME

FIRST_OFFER = StarterTemplate(
    "Лид: первое предложение",
    "Предложение о сотрудничестве для {{ party.name }}",
    """Добрый день!

Меня зовут {{ sender.name }}, я представляю производителя, который ищет дилеров в вашем
регионе. Мы даём дилерам оптовые цены, маркетинговые материалы и выгрузку каталога для
сайта и прайс-листов.

Предлагаю созвониться на этой неделе и обсудить условия для {{ party.name }}.

С уважением,
{{ sender.name }}{% if sender.phone %}, {{ sender.phone }}{% endif %}
""",
    pipeline=NAME,
    stage="lead",
)

DOCUMENTS_REQUEST = StarterTemplate(
    "Фирма: запрос документов",
    "Документы для оформления дилерства — {{ party.name }}",
    """Здравствуйте!

Спасибо, что решили работать с нами. Чтобы оформить дилерство, пришлите, пожалуйста:

1. карточку предприятия (реквизиты);
2. подписанный дилерский договор (проект во вложении).

Как только документы придут, откроем доступ к оптовым ценам и API.

С уважением,
{{ sender.name }}
""",
    pipeline=NAME,
    stage="firm",
)

INTEGRATION_HELP = StarterTemplate(
    "Аккаунт: помощь с интеграцией",
    "Как подключить каталог к сайту и прайс-листам — {{ party.name }}",
    """Добрый день!

Ваш аккаунт дилера открыт{% if today %} с {{ today|date }}{% endif %}. Подключить наш товар
можно двумя способами:

- через API: ключ и документация — в личном кабинете, раздел «Интеграция»;
- вручную: выгрузка каталога в Excel обновляется каждый день.

Если удобно, проведу короткую встречу и помогу настроить выгрузку на сайт.

С уважением,
{{ sender.name }}
""",
    pipeline=NAME,
    stage="account",
)

STAGE_TEMPLATES = (FIRST_OFFER, DOCUMENTS_REQUEST, INTEGRATION_HELP)
