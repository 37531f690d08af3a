"""OpenID Connect sign-in end to end: headless chromium signs in to the console through a real
provider (Authlib's server side, tests/review/oidc_provider.py) running in the test process over
TLS. Discovery, the JWKS and the ID token's RS256 signature are verified by the console's
Authlib client for real; the role comes from a claim. ID tokens with the wrong issuer, the wrong
audience, a bad nonce or a signature by a key outside the JWKS are refused."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from services.common.broker import free_port
from tests.kafka_helpers import wait_until

from .browser_helpers import chromium
from .helpers import review_settings, running_console
from .oidc_provider import Provider

pytestmark = pytest.mark.browser
CLIENT_ID, CLIENT_SECRET = "lfr-review", "client secret for the test provider"


@pytest.fixture(scope="module")
def provider_env(broker, tmp_path_factory, signing_identity):
    """One provider, console and browser for the module (each test signs in afresh)."""
    with pytest.MonkeyPatch.context() as env:  # the console signs its audit records (conftest's key)
        for name, value in signing_identity.items():
            env.setenv(name, value)
        yield from _provider_env(broker, tmp_path_factory.mktemp("oidc"))


def _provider_env(broker, tmp_path):
    from selenium.webdriver.common.by import By

    idp_port = free_port()
    settings = review_settings(broker.bootstrap_servers, tmp_path / "review")
    url = f"http://localhost:{settings.http_port}"
    with Provider(tmp_path, CLIENT_ID, CLIENT_SECRET, url + "/auth/oidc/callback", idp_port) as idp:
        settings = settings.model_copy(update={
            "public_url": url, "oidc_issuer": idp.issuer, "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": SecretStr(CLIENT_SECRET), "oidc_ca_file": str(idp.cert)})
        idp.add_person("insp-7", "idp password 7", lfr_roles=["operator"], lfr_deployments=["van-1"])
        idp.add_person("sup-3", "idp password 3", lfr_roles=["viewer", "supervisor"])
        idp.add_person("visitor", "idp password 0", lfr_roles=["viewer"])
        with running_console(settings):
            # The browser only navigates to the provider; its self-signed certificate is trusted by
            # the console (LFR_OIDC_CA_FILE), which is where tokens and keys are fetched and checked.
            driver = chromium("--ignore-certificate-errors")
            try:
                def sign_in(username: str, password: str) -> None:
                    driver.delete_all_cookies()
                    driver.get(url + "/login")
                    assert not driver.find_elements(By.ID, "password"), "the users-file form is off when OIDC is configured"
                    driver.find_element(By.ID, "oidc-sign-in").click()
                    wait_until(lambda: driver.find_elements(By.ID, "idp-username"), 15, "the provider's sign-in form")
                    assert driver.current_url.startswith(idp.issuer + "/authorize?")
                    driver.find_element(By.ID, "idp-username").send_keys(username)
                    driver.find_element(By.ID, "idp-password").send_keys(password)
                    driver.find_element(By.ID, "idp-sign-in").click()
                    wait_until(lambda: driver.current_url.startswith(url), 15, "back at the console")

                yield driver, idp, url, sign_in
            finally:
                driver.quit()


@pytest.fixture
def signed_in_env(provider_env):
    provider_env[1].tamper = None
    yield provider_env
    provider_env[1].tamper = None


def test_sign_in_through_the_provider_maps_the_role_claim(signed_in_env):
    from selenium.webdriver.common.by import By

    driver, idp, url, sign_in = signed_in_env
    sign_in("insp-7", "idp password 7")
    wait_until(lambda: any(e.text == "live" for e in driver.find_elements(By.ID, "live")), 20, "the console, live")
    assert driver.current_url == url + "/"
    assert driver.find_element(By.CSS_SELECTOR, ".who").text == "insp-7 (operator: van-1)"
    cookie = driver.get_cookie("lfr_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert driver.execute_script("return (await fetch('/api/alerts')).status") == 200
    # With OIDC on, the users file cannot sign anyone in (a leftover file must not bypass the provider).
    assert driver.execute_script("return (await fetch('/login', {method: 'POST', body: new URLSearchParams("
                                 "{username: 'x', password: 'y', csrf: 'z'})})).status") == 404

    sign_in("sup-3", "idp password 3")  # the first known role in the claim wins
    wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, ".who"), 20, "the console")
    assert driver.find_element(By.CSS_SELECTOR, ".who").text == "sup-3 (supervisor)"

    sign_in("visitor", "idp password 0")  # signed in at the provider, but no role here
    assert driver.get_cookie("lfr_session") is None and "no role" in driver.page_source
    assert driver.execute_script("return (await fetch('/api/alerts')).status") == 401


@pytest.mark.parametrize("tamper", ["issuer", "audience", "nonce", "foreign_key"])
def test_an_id_token_that_does_not_verify_is_refused(signed_in_env, tamper):
    from selenium.webdriver.common.by import By

    driver, idp, url, sign_in = signed_in_env
    from prometheus_client import REGISTRY

    idp.tamper = tamper
    issued = idp.tokens_issued
    refused = REGISTRY.get_sample_value("lfr_review_logins_total", {"result": "oidc_refused"}) or 0
    sign_in("insp-7", "idp password 7")
    wait_until(lambda: "Sign-in refused" in driver.page_source, 15, "the refusal")
    assert idp.tokens_issued == issued + 1, "the provider issued a token: the console refused it after verifying"
    assert REGISTRY.get_sample_value("lfr_review_logins_total", {"result": "oidc_refused"}) == refused + 1
    assert driver.get_cookie("lfr_session") is None
    assert driver.execute_script("return (await fetch('/api/alerts')).status") == 401
    assert driver.execute_script("return (await fetch('/')).url").endswith("/login")
    assert not driver.find_elements(By.ID, "live")
