"""Groups (teams): who belongs to which, for sharing, quotas and budgets."""

from __future__ import annotations

import re

from app.models import Group, GroupMember, User

GROUP_NAME = re.compile(r"^[a-z][a-z0-9]*([-_][a-z0-9]+)*$")


class GroupError(Exception):
    """A request about groups was refused; the message says why."""


def create(name: str, description: str = "") -> Group:
    name = (name or "").strip().lower()
    if not 2 <= len(name) <= 64 or not GROUP_NAME.match(name):
        raise GroupError(
            f"group name {name!r} is not allowed: use 2 to 64 lowercase letters, digits, "
            "single hyphens or underscores, starting with a letter"
        )
    if Group.select().where(Group.name == name).exists():
        raise GroupError(f"a group named {name!r} already exists")
    return Group.create(name=name, description=description or "")


def find(name: str) -> Group:
    group = Group.get_or_none(Group.name == (name or "").strip().lower())
    if group is None:
        raise GroupError(f"there is no group named {name!r}")
    return group


def add_member(group: Group, user: User) -> bool:
    """Add ``user``; False when they already belong."""
    if (
        GroupMember.select()
        .where((GroupMember.group == group) & (GroupMember.user == user))
        .exists()
    ):
        return False
    GroupMember.create(group=group, user=user)
    return True


def remove_member(group: Group, user: User) -> bool:
    return bool(
        GroupMember.delete()
        .where((GroupMember.group == group) & (GroupMember.user == user))
        .execute()
    )


def set_memberships(user: User, names: list[str]) -> None:
    """Make ``user`` belong to exactly these existing groups (single sign-on's mapping);
    unknown names are ignored."""
    wanted = {g.id for g in Group.select().where(Group.name.in_(names or []))}
    current = {m.group_id for m in GroupMember.select().where(GroupMember.user == user)}
    for group_id in wanted - current:
        GroupMember.create(group=group_id, user=user)
    if current - wanted:
        GroupMember.delete().where(
            (GroupMember.user == user) & GroupMember.group.in_(list(current - wanted))
        ).execute()


def of(user: User) -> list[Group]:
    return list(
        Group.select().join(GroupMember).where(GroupMember.user == user).order_by(Group.name)
    )


def members(group: Group) -> list[User]:
    return list(
        User.select().join(GroupMember).where(GroupMember.group == group).order_by(User.username)
    )
