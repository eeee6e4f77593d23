"""The web queue viewer driven in headless Chromium (Selenium and Debian's chromium-driver).

Usage: browser.py ADMIN_PORT SMTP_PORT TOKEN SCREENSHOT_DIR
The server has mail queued for a next hop that is down: five messages from alice@client.test and three
from spammer@bad.test whose subject is <script>alert(1)</script>.
"""

import json
import sys
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

admin_port, token, shots = int(sys.argv[1]), sys.argv[3], sys.argv[4]
base = f"http://127.0.0.1:{admin_port}"
passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok: {what}")
    else:
        failed += 1
        print(f"FAILED: {what}")


def api(path, method="GET"):
    req = urllib.request.Request(base + path, method=method, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def post_status(path, data, headers):
    req = urllib.request.Request(base + path, data=data.encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


options = webdriver.ChromeOptions()
for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000", "--disable-dev-shm-usage"]:
    options.add_argument(arg)
from selenium.webdriver.chrome.service import Service

service = Service(executable_path="/usr/bin/chromedriver")
driver = webdriver.Chrome(options=options, service=service)
wait = WebDriverWait(driver, 15)


def shot(name):
    driver.save_screenshot(f"{shots}/{name}.png")


def cells(selector):
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, selector)]


try:
    # Without the token every page leads to the sign-in form.
    driver.get(base + "/messages")
    wait.until(EC.presence_of_element_located((By.ID, "token")))
    check(driver.current_url.endswith("/login"), f"without the token /messages redirects to the sign-in form ({driver.current_url})")
    driver.find_element(By.ID, "token").send_keys("wrong-token")
    driver.find_element(By.CSS_SELECTOR, "form button").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "p.error")))
    check("not this server's admin token" in driver.page_source, "a wrong token is refused with a message")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form button").click()
    wait.until(EC.presence_of_element_located((By.ID, "queued")))
    check(driver.find_element(By.ID, "queued").text == "8", f"the dashboard counts 8 queued messages ({driver.find_element(By.ID, 'queued').text})")
    shot("dashboard")

    # The queue list shows the queues' counts as the API does.
    driver.get(base + "/queues")
    wait.until(EC.presence_of_element_located((By.ID, "queues")))
    queues = api("/api/v1/queues")["items"]
    shown = {}
    for row in driver.find_elements(By.CSS_SELECTOR, "#queues tbody tr"):
        shown[row.get_attribute("data-queue")] = int(row.find_element(By.CSS_SELECTOR, "td.count").text.replace(",", ""))
    expected = {q["identity"]: q["message_count"] for q in queues}
    check(shown == expected, f"the queue list shows every queue with the API's counts ({shown})")
    check(8 in shown.values(), "the next hop's queue holds the 8 messages")
    shot("queues")

    # A filter by sender shows exactly the matching messages.
    driver.get(base + "/messages")
    wait.until(EC.presence_of_element_located((By.ID, "sender")))
    driver.find_element(By.ID, "sender").send_keys("spammer@bad.test")
    driver.find_element(By.CSS_SELECTOR, "#message-filter button").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "match-count"), "3 messages match"))
    listed = sorted(r.get_attribute("data-identity") for r in driver.find_elements(By.CSS_SELECTOR, "#messages tbody tr"))
    from_api = sorted(m["identity"] for m in api("/api/v1/messages")["items"] if m["from_address"] == "spammer@bad.test")
    check(listed == from_api and len(listed) == 3, f"the filter by sender lists exactly the spammer's messages ({listed})")
    check(set(cells("#messages td.from")) == {"spammer@bad.test"}, "every listed sender is the one asked for")

    # A subject that is markup is shown as text and never runs.
    subjects = set(cells("#messages td.subject"))
    check(subjects == {"<script>alert(1)</script>"}, f"the subject <script>alert(1)</script> is shown as text ({subjects})")
    scripts = [s.get_attribute("src") for s in driver.find_elements(By.TAG_NAME, "script")]
    check(all(s and s.endswith("/assets/htmx.min.js") for s in scripts), f"the only script is the server's htmx ({scripts})")
    try:
        driver.switch_to.alert
        check(False, "no alert() ran")
    except NoAlertPresentException:
        check(True, "no alert() ran")
    shot("messages")

    # The message's page: envelope, recipients, tracking events.
    driver.find_element(By.CSS_SELECTOR, "#messages tbody tr a").click()
    wait.until(EC.presence_of_element_located((By.ID, "events")))
    check(driver.find_element(By.ID, "subject").text == "<script>alert(1)</script>", "the message page shows the subject as text")
    events = cells("#events tbody td:nth-child(2)")
    check("RECEIVE" in events, f"the message page lists its tracking events ({events})")
    shot("message")

    # Bulk suspend by the filter: a preview, a confirmation, a result; exactly those messages suspended.
    driver.get(base + "/messages?sender=spammer%40bad.test")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "form.bulk")))
    driver.find_element(By.CSS_SELECTOR, "form.bulk button[value=suspend]").click()
    wait.until(EC.presence_of_element_located((By.ID, "confirm")))
    preview = driver.find_element(By.ID, "preview").text
    check(preview.startswith("3 messages match"), f"the preview says how many match ({preview})")
    shot("bulk-preview")
    check(all(m["status"] != "Suspended" for m in api("/api/v1/messages")["items"]), "nothing is suspended before the confirmation")
    driver.find_element(By.ID, "confirm").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "p.done")))
    result = driver.find_element(By.CSS_SELECTOR, "p.done").text
    check(result == "Suspended: 3 of 3 messages.", f"the result says what was done ({result})")
    status = {m["identity"]: (m["from_address"], m["status"]) for m in api("/api/v1/messages")["items"]}
    suspended = sorted(i for i, (_, s) in status.items() if s == "Suspended")
    check(suspended == from_api, f"exactly the spammer's messages are suspended, through the API ({suspended})")

    # Signing out ends the session.
    driver.get(base + "/")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "form.logout button")))
    driver.find_element(By.CSS_SELECTOR, "form.logout button").click()
    wait.until(EC.presence_of_element_located((By.ID, "token")))
    driver.get(base + "/queues")
    wait.until(EC.presence_of_element_located((By.ID, "token")))
    check(driver.current_url.endswith("/login"), "after signing out the pages redirect to the sign-in form again")
finally:
    driver.quit()

# A form post from another site (no Origin of this server, no htmx header) is refused, even with the cookie's
# token given as a bearer token; the API still refuses form posts.
headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-www-form-urlencoded"}
code = post_status("/messages/bulk", "sender=alice&action=suspend&confirm=1", {**headers, "Origin": "http://evil.test"})
check(code == 403, f"a cross-site form post is refused with 403 ({code})")
code = post_status("/messages/bulk", "sender=alice&action=suspend&confirm=1", {"Origin": base, "Content-Type": "application/x-www-form-urlencoded"})
check(code == 401, f"a post without the token is refused with 401 ({code})")
check(all(m["status"] != "Suspended" for m in api("/api/v1/messages")["items"] if m["from_address"] == "alice@client.test"),
      "alice's messages were never suspended")

audits = [e for e in api("/api/v1/tracking?event_id=AUDIT")["items"] if e["audit"]["path"].startswith("/messages/bulk")]
check(any(e["audit"]["status"] == 200 and e["audit"]["token"] for e in audits), "the bulk action is an audit event made with the session")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
