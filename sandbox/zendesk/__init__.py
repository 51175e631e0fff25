"""A stateful Zendesk Support emulator driven through ``zenpy``.

See :class:`ZendeskEmulator`; the facts it follows are in
``shared/docs/reference/erp-support-email-apis.md`` §2 (its "Emulator checklist" is §2.8).
"""

from .emulator import ZendeskEmulator, signature

__all__ = ["ZendeskEmulator", "signature"]
