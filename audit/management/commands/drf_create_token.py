"""DRF's `drf_create_token`, with the token recorded in the ledger (this app comes before rest_framework.authtoken)."""
from rest_framework.authtoken.management.commands.drf_create_token import Command as DrfCreateToken, UserModel

from audit.actors import actor_command
from audit.tokens import token_create


class Command(DrfCreateToken):
    def create_user_token(self, username, reset_token):
        user = UserModel._default_manager.get_by_natural_key(username)
        return token_create(user=user, reset=reset_token, actor=actor_command("drf_create_token"))
