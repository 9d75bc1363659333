# form_session PORT PASSWORD DIR: logs tester@example.com in through the login page's
# form on https://127.0.0.1:PORT, as a browser does (the page's CSRF token, the cookie
# jar, the Origin of the configured public URL https://localhost:PORT), and prints the
# session cookie's value; the jar and the page go into DIR. Fails, saying so, when the
# form sets no session cookie. Sourced by the load scripts; defines nothing else.
form_session() {
  local port=$1 password=$2 dir=$3
  local jar=$dir/cookies.txt csrf session
  curl -sk -c "$jar" -b "$jar" -o "$dir/login.html" "https://127.0.0.1:$port/auth/login"
  csrf=$(grep -o 'name="csrf" value="[^"]*"' "$dir/login.html" | head -1 | sed -E 's/.*value="([^"]*)"/\1/')
  curl -sk -c "$jar" -b "$jar" -o /dev/null -H "Origin: https://localhost:$port" \
    --data-urlencode "email=tester@example.com" --data-urlencode "password=$password" --data-urlencode "csrf=$csrf" \
    "https://127.0.0.1:$port/auth/login"
  session=$(awk '$6 == "__Host-portcullis" {print $7}' "$jar")
  [ -n "$session" ] || { echo "the form login on port $port set no session cookie" >&2; return 1; }
  printf '%s\n' "$session"
}
