"""A real WordPress blog for the tests: Debian's `wordpress` package on a private MariaDB.

Everything runs on loopback and belongs to the test process that starts it: a MariaDB server
with its own data directory and port (never the system one on 3306), and `php -S` serving a
private copy of Debian's WordPress whose wp-config.php and wp-content are the test's. Both are
stopped by their pid (their process group) when the test ends.

Debian's /usr/share/wordpress/wp-config.php reads /etc/wordpress/config-<host>.php: the test
leaves /etc alone and builds a site folder of its own instead. PHP resolves symlinks in
`__FILE__`, and WordPress finds its wp-config.php from the file that was requested, so the
entry points (the top-level *.php files and wp-admin) are copied and the rest (wp-includes, the
Akismet plugin, the theme) is linked.

The packages are installed by `make wordpress` (which `make test` runs).
"""

from __future__ import annotations

import contextlib
import html
import os
import pwd
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from service.embedded import free_port, wait_for

DEBIAN_WORDPRESS = Path("/usr/share/wordpress")
AKISMET_PLUGIN = DEBIAN_WORDPRESS / "wp-content/plugins/akismet"
THEME = DEBIAN_WORDPRESS / "wp-content/themes/twentytwentythree"
MU_PLUGIN = Path(__file__).resolve().parents[3] / "docs/wordpress/commentguard-akismet.php"
REQUIRED = {
    "php": "php-cli",
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "mariadb": "mariadb-client",
}
DB_NAME = "wordpress"
DB_USER = "wordpress"
DB_PASSWORD = "wordpress-test-password"


def require_packages() -> None:
    """Fail clearly, naming what to install, when Debian's packages are missing."""
    missing = sorted(
        {package for binary, package in REQUIRED.items() if not _which(binary)}
        | ({"wordpress"} if not (DEBIAN_WORDPRESS / "wp-settings.php").exists() else set())
        | ({"wordpress-theme-twentytwentythree"} if not THEME.exists() else set())
        | ({"php-mysql"} if _which("php") and not _php_has_mysqli() else set())
    )
    if missing:
        pytest.fail(
            f"the WordPress test needs Debian's {', '.join(missing)}: run `make wordpress` "
            "(as root; `make test` runs it)",
            pytrace=False,
        )


def _which(binary: str) -> str | None:
    return shutil.which(binary, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin")


def _php_has_mysqli() -> bool:
    result = subprocess.run(["php", "-m"], capture_output=True, text=True, timeout=30)
    return "mysqli" in result.stdout.split()


def _stop(process: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    """Stop a child and its process group by its pid: SIGTERM, then SIGKILL."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


# --- MariaDB ---------------------------------------------------------------------------------


class PrivateMariaDB:
    """A mariadbd with its own data directory, socket and port on 127.0.0.1."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.socket = folder / "mysqld.sock"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        # mariadbd runs as root only when told to; CI runs the tests as root.
        self._user = ["--user=root"] if os.geteuid() == 0 else []
        # mariadb-install-db gives root and the user running it an account that logs in by
        # socket as that system user: no password to keep.
        self._os_user = pwd.getpwuid(os.geteuid()).pw_name

    def start(self) -> None:
        result = subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.data}", *self._user,
             "--auth-root-authentication-method=socket", "--skip-test-db"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if result.returncode != 0:
            pytest.fail(f"mariadb-install-db failed: {result.stdout}{result.stderr}")
        log = (self.folder / "mariadb.log").open("ab")
        self.process = subprocess.Popen(
            [_which("mariadbd") or "mariadbd", "--no-defaults", f"--datadir={self.data}",
             f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--pid-file={self.folder / 'mysqld.pid'}", *self._user, "--skip-name-resolve",
             "--skip-log-bin", "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
             "--innodb-flush-log-at-trx-commit=0", "--skip-innodb-doublewrite",
             "--performance-schema=OFF"],
            stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        log.close()

        def accepting() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"mariadbd exited: {(self.folder / 'mariadb.log').read_text()}")
            return self.sql("SELECT 1") == "1"

        wait_for(accepting, 60, "the private MariaDB")
        self.sql(
            f"CREATE DATABASE {DB_NAME} CHARACTER SET utf8mb4; "
            f"CREATE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}'; "
            f"GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'127.0.0.1';"
        )

    def sql(self, statement: str, database: str = "") -> str:
        """Run statements as root over the socket; their output, tab-separated, no headers."""
        result = subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self.socket}", f"--user={self._os_user}",
             "-N", "-B",
             *([database] if database else []), "-e", statement],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"mariadb: {result.stderr.strip()}")
        return result.stdout.strip()

    def stop(self) -> None:
        _stop(self.process, timeout=30)


# --- the WordPress site ----------------------------------------------------------------------


class FormParser(HTMLParser):
    """The forms of a page: each one's attributes and its fields' names and values."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[tuple[dict[str, str], dict[str, str]]] = []
        self._inside = False
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((values, {}))
            self._inside = True
        elif self._inside and tag in ("input", "textarea", "select") and values.get("name"):
            kind = values.get("type", "text")
            if kind in ("radio", "checkbox") and "checked" not in values:
                return
            if kind == "submit":
                return
            self.forms[-1][1][values["name"]] = values.get("value", "")
            self._textarea = values["name"] if tag == "textarea" else None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self.forms[-1][1][self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False
        if tag == "textarea":
            self._textarea = None


def form(page: str, **match: str) -> tuple[str, dict[str, str]]:
    """The (action, fields) of the first form whose fields include `match`."""
    parser = FormParser()
    parser.feed(page)
    for attrs, fields in parser.forms:
        if all(fields.get(name) == value for name, value in match.items()):
            return attrs.get("action", ""), fields
    pytest.fail(f"no form with {match} on the page")


def link(page: str, pattern: str) -> str:
    """The first link whose (unescaped) href matches `pattern`."""
    for href in re.findall(r'href="([^"]+)"', page):
        href = html.unescape(href)
        if re.search(pattern, href):
            return href
    pytest.fail(f"no link matching {pattern!r} on the page")


@dataclass
class WordPressSite:
    """A fresh WordPress site in `folder`, served by `php -S` on 127.0.0.1."""

    folder: Path
    database: PrivateMariaDB
    commentguard_url: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> Path:
        return self.folder / "site"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def build(self) -> None:
        """The site folder: WordPress's entry points copied, the rest linked, our config."""
        self.root.mkdir(parents=True)
        for entry in DEBIAN_WORDPRESS.iterdir():
            if entry.name in ("wp-config.php", "wp-content", ".htaccess"):
                continue
            target = self.root / entry.name
            if entry.name == "wp-admin":
                shutil.copytree(entry, target, symlinks=True)
            elif entry.is_dir():
                target.symlink_to(entry)
            else:
                shutil.copy2(entry, target)
        content = self.root / "wp-content"
        (content / "plugins").mkdir(parents=True)
        (content / "themes").mkdir()
        (content / "uploads").mkdir()
        (content / "plugins/akismet").symlink_to(AKISMET_PLUGIN)
        (content / "themes" / THEME.name).symlink_to(THEME)
        (self.root / "wp-config.php").write_text(self._config())

    def _config(self) -> str:
        salts = "".join(
            f"define( '{name}', '{os.urandom(24).hex()}' );\n"
            for name in (
                "AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY",
                "AUTH_SALT", "SECURE_AUTH_SALT", "LOGGED_IN_SALT", "NONCE_SALT",
            )
        )  # fmt: skip
        return (
            "<?php\n"
            f"define( 'DB_NAME', '{DB_NAME}' );\n"
            f"define( 'DB_USER', '{DB_USER}' );\n"
            f"define( 'DB_PASSWORD', '{DB_PASSWORD}' );\n"
            f"define( 'DB_HOST', '127.0.0.1:{self.database.port}' );\n"
            "define( 'DB_CHARSET', 'utf8mb4' );\n"
            f"{salts}"
            "$table_prefix = 'wp_';\n"
            # The test's machine reaches no one but loopback: WordPress's own calls home
            # (updates, the Akismet plugin's before it is rerouted) fail at once instead of
            # waiting on DNS. The site's own host (127.0.0.1) stays reachable.
            "define( 'WP_HTTP_BLOCK_EXTERNAL', true );\n"
            # WP-Cron runs when the test requests wp-cron.php (as a system cron would), not
            # from a visitor's page load at a moment the test does not choose.
            "define( 'DISABLE_WP_CRON', true );\n"
            "define( 'AUTOMATIC_UPDATER_DISABLED', true );\n"
            "define( 'WP_DEBUG', false );\n"
            "if ( ! defined( 'ABSPATH' ) ) { define( 'ABSPATH', __DIR__ . '/' ); }\n"
            "require_once ABSPATH . 'wp-settings.php';\n"
        )

    def configure_commentguard(self) -> None:
        """The documented steps: the must-use plugin, and the URL in wp-config.php."""
        mu_plugins = self.root / "wp-content/mu-plugins"
        mu_plugins.mkdir(exist_ok=True)
        shutil.copy2(MU_PLUGIN, mu_plugins / MU_PLUGIN.name)
        config = self.root / "wp-config.php"
        define = f"define( 'COMMENTGUARD_AKISMET_URL', '{self.commentguard_url}' );\n"
        text = config.read_text()
        config.write_text(text.replace("$table_prefix", define + "$table_prefix", 1))

    def serve(self) -> None:
        log = (self.folder / "php.log").open("ab")
        self.process = subprocess.Popen(
            # opcache compiles WordPress once; revalidate_freq=0 so that it sees at once the
            # wp-config.php the test edits, as a server without opcache would.
            ["php", "-d", "opcache.enable_cli=1", "-d", "opcache.revalidate_freq=0",
             "-d", "memory_limit=256M",
             "-S", f"127.0.0.1:{self.port}", "-t", str(self.root)],
            stdout=log, stderr=log, cwd=self.root, start_new_session=True,
            # Workers, so that a page which calls the site itself is not served after itself.
            env={**os.environ, "PHP_CLI_SERVER_WORKERS": "2"},
        )  # fmt: skip
        log.close()

        def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"php -S exited: {(self.folder / 'php.log').read_text()}")
            return httpx.get(f"{self.url}/readme.html", timeout=2).status_code == 200

        wait_for(up, 30, "php -S")

    def php(self, code: str) -> str:
        """Run PHP with WordPress loaded (as WP-CLI would), as the site's own code."""
        script = self.folder / "run.php"
        script.write_text(
            "<?php\n"
            f"$_SERVER['HTTP_HOST'] = '127.0.0.1:{self.port}';\n"
            f"require '{self.root}/wp-load.php';\n{code}\n"
        )
        result = subprocess.run(
            ["php", str(script)], capture_output=True, text=True, timeout=60, cwd=self.root
        )
        if result.returncode != 0:
            raise RuntimeError(f"php: {result.stdout}{result.stderr}")
        return result.stdout.strip()

    def sql(self, statement: str) -> str:
        return self.database.sql(statement, DB_NAME)

    def stop(self) -> None:
        _stop(self.process)


@contextlib.contextmanager
def wordpress_site(folder: Path, commentguard_url: str) -> Iterator[WordPressSite]:
    """A private MariaDB and a WordPress site not yet installed, both stopped afterwards."""
    require_packages()
    database = PrivateMariaDB(folder)
    site = WordPressSite(folder, database, commentguard_url)
    try:
        database.start()
        site.build()
        site.serve()
        yield site
    finally:
        site.stop()
        database.stop()
