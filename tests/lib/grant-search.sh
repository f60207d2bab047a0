# Sourced by the scripts that run this build's programs as other OS users (the daemon's service
# user, the callers): every directory above the build and the test root must be searchable by
# those users. A checkout in a private directory (mktemp -d makes 0700) is not, so
# grant_search WHO DIR... grants search only (o+x), never read, on each directory from DIR up to
# /, and says so, WHO naming the script in the message.
grant_search() {
    local who=$1 d
    shift
    for d in "$@"; do
        while [ "$d" != / ] && [ -n "$d" ]; do
            if [ -z "$(find "$d" -maxdepth 0 -perm -o=x)" ]; then
                echo "$who: granting o+x on $d so that other OS users can reach the build"
                chmod o+x "$d"
            fi
            d=$(dirname "$d")
        done
    done
}
