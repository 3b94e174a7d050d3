#!/bin/sh
# The demo's "integration tests": a JUnit report like pytest --junitxml writes.
# test_token_expiry fails until the builder has fixed it for this task
# (app/fixed-<task>.txt exists on the task's branch gaffer/<task>).
task=$(git rev-parse --abbrev-ref HEAD | sed 's#^gaffer/##')
fail=""
if [ ! -f "app/fixed-$task.txt" ]; then
  fail='<failure message="token expired after 0s, expected 900s">AssertionError</failure>'
fi
cat > report.xml <<XML
<testsuite name="Integration tests" tests="3">
  <testcase classname="tests.test_auth" name="test_login"/>
  <testcase classname="tests.test_auth" name="test_token_signature"/>
  <testcase classname="tests.test_auth" name="test_token_expiry">$fail</testcase>
</testsuite>
XML
[ -z "$fail" ]
