"""The set-up's pages: the HTML of each step (welcome, on to GitHub, done and what next,
already set up), every value escaped, never cached, no referrer."""

from __future__ import annotations

import html

from aiohttp import web

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Honk set-up</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;
padding:0 1rem;overflow-wrap:anywhere}}code{{background:#f3f3f3;padding:0 .2em}}
pre{{background:#f3f3f3;padding:.5rem;white-space:pre-wrap;overflow-wrap:anywhere}}
input{{font-size:1rem;padding:.3em;max-width:100%}}
button{{font-size:1rem;padding:.4em 1em;min-height:44px}}li{{margin:.4rem 0}}</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""

WELCOME = """<p>Honk is not connected to GitHub yet. This registers a new GitHub App from
<code>app.yml</code>: GitHub asks you to confirm, then sends you back here and Honk writes
<code>APP_ID</code>, <code>PRIVATE_KEY</code>, <code>WEBHOOK_SECRET</code> and the App's
OAuth client (<code>GITHUB_CLIENT_ID</code>, <code>GITHUB_CLIENT_SECRET</code>, for signing in
to the run pages) into <code>{env_file}</code>.</p>
<p>Webhooks will be sent to <code>{webhook_url}</code>. If that is not the address GitHub can
reach, open this page through that address (a tunnel or your proxy) instead.</p>
<p>No public address yet? A tunnel gives Honk one for a first try. With
<a href="https://ngrok.com/download">ngrok</a> and a free account's token
(<code>ngrok config add-authtoken &lt;token&gt;</code>, once), this prints an
<code>https://</code> address to open this page at:</p>
<pre id="tunnel">{tunnel}</pre>
<form method="post" action="{start_path}">
<p><label>Organization (leave empty to register the App on your personal account)<br>
<input name="org" pattern="[A-Za-z0-9][A-Za-z0-9-]{{0,38}}" autocomplete="off"></label></p>
<p><label>App name (must be unique on {github_host})<br>
<input name="name" value="{name}" maxlength="34" required></label></p>
<p><button type="submit">Register the GitHub App on {github_host}</button></p>
</form>
"""

TO_GITHUB = """<p>Sending you to GitHub to create the App <b>{name}</b> on {owner}…</p>
<form id="manifest" method="post" action="{action}">
<input type="hidden" name="manifest" value="{manifest}">
<p><button type="submit">Continue to GitHub</button></p>
</form>
<script>document.getElementById("manifest").submit()</script>
"""

DONE = """<p>The GitHub App <a href="{app_url}">{name}</a> (id {app_id}) is registered and its
credentials are written to <code>{env_file}</code> (readable by its owner only).</p>
<h2>Next steps</h2>
<ol id="next-steps">
<li>{anthropic_step}</li>
<li>{url_step}</li>
<li><b>Restart Honk</b> (stop <code>honk serve</code> and start it again): settings are read
once at start, and every part of Honk (the GitHub client, the webhook check, the log
redactor, the workers) is built from them.</li>
<li><a href="{install_url}">Install the App</a> on the repositories Honk should work in.</li>
<li>Label an issue in one of them <code>{label}</code> (Honk adds the label to the
repositories when the App is installed). Honk comments on the issue at once with a link to
the run's page, where you watch the agent work; a pull request follows in a few
minutes.</li>
</ol>
"""
ANTHROPIC_STEP = """Put your Anthropic API key into <code>{env_file}</code>:
<pre>ANTHROPIC_API_KEY=sk-ant-…</pre>"""
ANTHROPIC_SET = "<code>ANTHROPIC_API_KEY</code> is set already."
URL_STEP = """Put the address people open Honk at into <code>{env_file}</code> too; the run
pages, sign-in and the links Honk leaves on GitHub and in Slack use it:
<pre>HONK_URL={base_url}</pre>"""
URL_SET = "<code>HONK_URL</code> is set already (<code>{honk_url}</code>)."
# Any tunnel will do; ngrok is the README's first run, so the page and the README agree.
TUNNEL = "ngrok http {port}"

ALREADY = """<p>Honk is already connected to a GitHub App: {why}.
Restart Honk if you have just registered it. To start over, remove <code>APP_ID</code>
from <code>{env_file}</code> and restart.</p>
"""


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str, *, status: int = 200) -> web.Response:
    return web.Response(
        text=PAGE.format(title=escape(title), body=body),
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
