"""The parts of GitHub's webhook payloads Honk reads, as `TypedDict`s.

Only what Honk's handlers, CI's reporter and the installation records read is declared; a
payload carries much more, which is left undeclared (a TypedDict does not forbid other
keys). A key GitHub may leave out is `NotRequired`, and a value it may send as `null` is
`| None`. GitHub's handlers `cast` `Context.payload` to their event's type on their first
line; nothing checks a delivery against these types at run time (tests/test_payload_types.py
checks GitHub's own example payloads against them).
"""

# No `from __future__ import annotations`: TypedDict reads `NotRequired` from annotations
# evaluated at class creation (Python 3.11 counts a string annotation's key as required).
from typing import NotRequired, TypedDict

# -- the objects events carry ----------------------------------------------------------------


class User(TypedDict):
    """A user or bot (`sender`, a comment's `user`, an installation's `account`)."""

    login: str
    id: int
    type: str


class Repository(TypedDict):
    full_name: str
    archived: NotRequired[bool]


class InstallationRef(TypedDict):
    """The `installation` a repository event carries when delivered to an App."""

    id: int


class Installation(TypedDict):
    """The `installation` of `installation` and `installation_repositories` events."""

    id: int
    account: User
    repository_selection: str


class RepositoryRef(TypedDict):
    """A repository as installation events list it."""

    full_name: str


class Label(TypedDict):
    name: str


class PullRequestRef(TypedDict):
    """An issue's `pull_request`: present only when the issue is a pull request."""

    url: str


class Issue(TypedDict):
    number: int
    title: str
    body: str | None
    labels: NotRequired[list[Label]]
    pull_request: NotRequired[PullRequestRef]


class Branch(TypedDict):
    """A pull request's `head` or `base`."""

    ref: str
    sha: str


class PullRequest(TypedDict):
    number: int
    title: str
    body: str | None
    head: Branch
    base: Branch


class ClosedPullRequest(PullRequest):
    """The `pull_request` of a `pull_request` event: whether it was merged (null while open)."""

    state: str
    merged: bool | None


class Review(TypedDict):
    """A pull request review; its `state` is GitHub's in lower case (approved, commented,
    changes_requested, dismissed)."""

    id: int
    state: str
    user: User | None
    commit_id: str


class Comment(TypedDict):
    """An issue comment, or a review comment (which adds `path` and a line)."""

    id: int
    url: str
    body: str
    user: User | None
    path: NotRequired[str]
    line: NotRequired[int | None]
    original_line: NotRequired[int | None]
    position: NotRequired[int | None]


class App(TypedDict):
    id: int


class CheckSuite(TypedDict):
    head_sha: str
    app: App | None


class CheckRun(TypedDict):
    head_sha: str
    app: App | None


class WorkflowRun(TypedDict):
    head_sha: str


class Deployment(TypedDict):
    sha: str
    environment: str
    production_environment: NotRequired[bool]


class DeploymentStatus(TypedDict):
    state: str
    environment: NotRequired[str]
    environment_url: NotRequired[str | None]
    target_url: NotRequired[str | None]
    log_url: NotRequired[str | None]


# -- the events Honk's router registers ------------------------------------------------------


class RepositoryEvent(TypedDict):
    """What every event on a repository carries."""

    sender: User
    repository: Repository
    installation: NotRequired[InstallationRef]


class IssuesEvent(RepositoryEvent):
    """`issues` (Honk handles `labeled`)."""

    action: str
    issue: Issue
    label: NotRequired[Label]


class IssueCommentEvent(RepositoryEvent):
    """`issue_comment` (Honk handles `created`)."""

    action: str
    issue: Issue
    comment: Comment


class PullRequestReviewCommentEvent(RepositoryEvent):
    """`pull_request_review_comment` (Honk handles `created`)."""

    action: str
    pull_request: PullRequest
    comment: Comment


class PullRequestEvent(RepositoryEvent):
    """`pull_request` (Honk handles `closed`: a fleet PR merged or closed)."""

    action: str
    number: int
    pull_request: ClosedPullRequest


class PullRequestReviewEvent(RepositoryEvent):
    """`pull_request_review` (Honk handles `submitted`: a fleet PR approved)."""

    action: str
    review: Review
    pull_request: PullRequest


class CheckSuiteEvent(RepositoryEvent):
    action: str
    check_suite: CheckSuite


class CheckRunEvent(RepositoryEvent):
    action: str
    check_run: CheckRun


class WorkflowRunEvent(RepositoryEvent):
    action: str
    workflow_run: WorkflowRun


class StatusEvent(RepositoryEvent):
    """`status`: no action; its `state` is pending, success, failure or error."""

    sha: str
    state: str


class DeploymentStatusEvent(RepositoryEvent):
    action: str
    deployment: Deployment
    deployment_status: DeploymentStatus


class InstallationEvent(TypedDict):
    """`installation` (created, deleted, suspend, unsuspend)."""

    action: str
    sender: User
    installation: Installation
    repositories: NotRequired[list[RepositoryRef]]


class InstallationRepositoriesEvent(TypedDict):
    """`installation_repositories` (added, removed)."""

    action: str
    sender: User
    installation: Installation
    repositories_added: list[RepositoryRef]
    repositories_removed: list[RepositoryRef]


class GitHubAppAuthorizationEvent(TypedDict):
    """`github_app_authorization` (revoked): who revoked, and nothing else."""

    action: str
    sender: User


# Each event Honk handles, by its `X-GitHub-Event` name.
EVENTS: dict[str, type] = {
    "issues": IssuesEvent,
    "issue_comment": IssueCommentEvent,
    "pull_request_review_comment": PullRequestReviewCommentEvent,
    "pull_request": PullRequestEvent,
    "pull_request_review": PullRequestReviewEvent,
    "check_suite": CheckSuiteEvent,
    "check_run": CheckRunEvent,
    "workflow_run": WorkflowRunEvent,
    "status": StatusEvent,
    "deployment_status": DeploymentStatusEvent,
    "installation": InstallationEvent,
    "installation_repositories": InstallationRepositoriesEvent,
    "github_app_authorization": GitHubAppAuthorizationEvent,
}
