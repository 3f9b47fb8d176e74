# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_rehost_global_optspecs
    string join \n c/config= dry-run v/verbose q/quiet log-format= h/help V/version
end

function __fish_rehost_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_rehost_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_rehost_using_subcommand
    set -l cmd (__fish_rehost_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c rehost -n "__fish_rehost_needs_command" -s c -l config -d 'Configuration file' -r -F
complete -c rehost -n "__fish_rehost_needs_command" -l log-format -r -f -a "text\t''
json\t''"
complete -c rehost -n "__fish_rehost_needs_command" -l dry-run -d 'Show what would be uploaded, restored or deleted, and change nothing'
complete -c rehost -n "__fish_rehost_needs_command" -s v -l verbose -d 'More log output (-vv for even more)'
complete -c rehost -n "__fish_rehost_needs_command" -s q -l quiet -d 'Less log output (-qq for errors only)'
complete -c rehost -n "__fish_rehost_needs_command" -s h -l help -d 'Print help'
complete -c rehost -n "__fish_rehost_needs_command" -s V -l version -d 'Print version'
complete -c rehost -n "__fish_rehost_needs_command" -f -a "backup" -d 'Back up state entries now (all of them unless NAMEs are given)'
complete -c rehost -n "__fish_rehost_needs_command" -f -a "restore" -d 'Restore state entries from storage, following each entry\'s `restore:` policy'
complete -c rehost -n "__fish_rehost_needs_command" -f -a "backups" -d 'Inspect the backups in storage'
complete -c rehost -n "__fish_rehost_needs_command" -f -a "verify" -d 'Download a backup and check every checksum and archive entry, without restoring'
complete -c rehost -n "__fish_rehost_needs_command" -f -a "prune" -d 'Apply each entry\'s `keep:` retention policy now'
complete -c rehost -n "__fish_rehost_needs_command" -f -a "pull" -d 'Pull content into each `pull:` entry\'s dest now (all of them unless NAMEs are given)'
complete -c rehost -n "__fish_rehost_needs_command" -f -a "fleet" -d 'Every host\'s backups in the store: per state entry, the newest backup\'s age, size, generation and verification'
complete -c rehost -n "__fish_rehost_needs_command" -f -a "check" -d 'Validate the configuration and storage access; change nothing'
complete -c rehost -n "__fish_rehost_needs_command" -f -a "init" -d 'Register this host in the store (once per new host; idempotent)'
complete -c rehost -n "__fish_rehost_needs_command" -f -a "run" -d 'Run the scheduled jobs (backups, pulls) until SIGTERM or SIGINT'
complete -c rehost -n "__fish_rehost_needs_command" -f -a "status" -d 'Show the last success and attempt of every job, from the metrics files'
complete -c rehost -n "__fish_rehost_needs_command" -f -a "boot" -d 'The boot sequence of a fresh VM: restore state, bring the stack up, run the jobs'
complete -c rehost -n "__fish_rehost_needs_command" -f -a "up" -d 'Reconcile the Docker Engine with the stack\'s compose file (`stack:`)'
complete -c rehost -n "__fish_rehost_needs_command" -f -a "down" -d 'Stop and remove the stack\'s containers and networks (`stack.project`)'
complete -c rehost -n "__fish_rehost_needs_command" -f -a "completions" -d 'Print the completion script for SHELL on stdout'
complete -c rehost -n "__fish_rehost_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rehost -n "__fish_rehost_using_subcommand backup" -s c -l config -d 'Configuration file' -r -F
complete -c rehost -n "__fish_rehost_using_subcommand backup" -l log-format -r -f -a "text\t''
json\t''"
complete -c rehost -n "__fish_rehost_using_subcommand backup" -l dry-run -d 'Show what would be uploaded, restored or deleted, and change nothing'
complete -c rehost -n "__fish_rehost_using_subcommand backup" -s v -l verbose -d 'More log output (-vv for even more)'
complete -c rehost -n "__fish_rehost_using_subcommand backup" -s q -l quiet -d 'Less log output (-qq for errors only)'
complete -c rehost -n "__fish_rehost_using_subcommand backup" -s h -l help -d 'Print help'
complete -c rehost -n "__fish_rehost_using_subcommand restore" -l backup -d 'Restore this backup id instead of the newest (needs exactly one NAME)' -r
complete -c rehost -n "__fish_rehost_using_subcommand restore" -l at -d 'Restore the newest backup made at or before TIME (RFC 3339, or `YYYY-MM-DD HH:MM[:SS]` in UTC)' -r
complete -c rehost -n "__fish_rehost_using_subcommand restore" -s c -l config -d 'Configuration file' -r -F
complete -c rehost -n "__fish_rehost_using_subcommand restore" -l log-format -r -f -a "text\t''
json\t''"
complete -c rehost -n "__fish_rehost_using_subcommand restore" -l force -d 'Restore even if the policy says not to (replaces the current content)'
complete -c rehost -n "__fish_rehost_using_subcommand restore" -l dry-run -d 'Show what would be uploaded, restored or deleted, and change nothing'
complete -c rehost -n "__fish_rehost_using_subcommand restore" -s v -l verbose -d 'More log output (-vv for even more)'
complete -c rehost -n "__fish_rehost_using_subcommand restore" -s q -l quiet -d 'Less log output (-qq for errors only)'
complete -c rehost -n "__fish_rehost_using_subcommand restore" -s h -l help -d 'Print help'
complete -c rehost -n "__fish_rehost_using_subcommand backups; and not __fish_seen_subcommand_from list help" -s c -l config -d 'Configuration file' -r -F
complete -c rehost -n "__fish_rehost_using_subcommand backups; and not __fish_seen_subcommand_from list help" -l log-format -r -f -a "text\t''
json\t''"
complete -c rehost -n "__fish_rehost_using_subcommand backups; and not __fish_seen_subcommand_from list help" -l dry-run -d 'Show what would be uploaded, restored or deleted, and change nothing'
complete -c rehost -n "__fish_rehost_using_subcommand backups; and not __fish_seen_subcommand_from list help" -s v -l verbose -d 'More log output (-vv for even more)'
complete -c rehost -n "__fish_rehost_using_subcommand backups; and not __fish_seen_subcommand_from list help" -s q -l quiet -d 'Less log output (-qq for errors only)'
complete -c rehost -n "__fish_rehost_using_subcommand backups; and not __fish_seen_subcommand_from list help" -s h -l help -d 'Print help'
complete -c rehost -n "__fish_rehost_using_subcommand backups; and not __fish_seen_subcommand_from list help" -f -a "list" -d 'List complete backups: id, time, size, files, checksum'
complete -c rehost -n "__fish_rehost_using_subcommand backups; and not __fish_seen_subcommand_from list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rehost -n "__fish_rehost_using_subcommand backups; and __fish_seen_subcommand_from list" -s c -l config -d 'Configuration file' -r -F
complete -c rehost -n "__fish_rehost_using_subcommand backups; and __fish_seen_subcommand_from list" -l log-format -r -f -a "text\t''
json\t''"
complete -c rehost -n "__fish_rehost_using_subcommand backups; and __fish_seen_subcommand_from list" -l json -d 'Print one JSON document on stdout instead of a table (see the README)'
complete -c rehost -n "__fish_rehost_using_subcommand backups; and __fish_seen_subcommand_from list" -l dry-run -d 'Show what would be uploaded, restored or deleted, and change nothing'
complete -c rehost -n "__fish_rehost_using_subcommand backups; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output (-vv for even more)'
complete -c rehost -n "__fish_rehost_using_subcommand backups; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Less log output (-qq for errors only)'
complete -c rehost -n "__fish_rehost_using_subcommand backups; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c rehost -n "__fish_rehost_using_subcommand backups; and __fish_seen_subcommand_from help" -f -a "list" -d 'List complete backups: id, time, size, files, checksum'
complete -c rehost -n "__fish_rehost_using_subcommand backups; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rehost -n "__fish_rehost_using_subcommand verify" -l backup -d 'Verify this backup id instead of the newest (needs exactly one NAME)' -r
complete -c rehost -n "__fish_rehost_using_subcommand verify" -s c -l config -d 'Configuration file' -r -F
complete -c rehost -n "__fish_rehost_using_subcommand verify" -l log-format -r -f -a "text\t''
json\t''"
complete -c rehost -n "__fish_rehost_using_subcommand verify" -l dry-run -d 'Show what would be uploaded, restored or deleted, and change nothing'
complete -c rehost -n "__fish_rehost_using_subcommand verify" -s v -l verbose -d 'More log output (-vv for even more)'
complete -c rehost -n "__fish_rehost_using_subcommand verify" -s q -l quiet -d 'Less log output (-qq for errors only)'
complete -c rehost -n "__fish_rehost_using_subcommand verify" -s h -l help -d 'Print help'
complete -c rehost -n "__fish_rehost_using_subcommand prune" -s c -l config -d 'Configuration file' -r -F
complete -c rehost -n "__fish_rehost_using_subcommand prune" -l log-format -r -f -a "text\t''
json\t''"
complete -c rehost -n "__fish_rehost_using_subcommand prune" -l dry-run -d 'Show what would be uploaded, restored or deleted, and change nothing'
complete -c rehost -n "__fish_rehost_using_subcommand prune" -s v -l verbose -d 'More log output (-vv for even more)'
complete -c rehost -n "__fish_rehost_using_subcommand prune" -s q -l quiet -d 'Less log output (-qq for errors only)'
complete -c rehost -n "__fish_rehost_using_subcommand prune" -s h -l help -d 'Print help'
complete -c rehost -n "__fish_rehost_using_subcommand pull" -s c -l config -d 'Configuration file' -r -F
complete -c rehost -n "__fish_rehost_using_subcommand pull" -l log-format -r -f -a "text\t''
json\t''"
complete -c rehost -n "__fish_rehost_using_subcommand pull" -l dry-run -d 'Show what would be uploaded, restored or deleted, and change nothing'
complete -c rehost -n "__fish_rehost_using_subcommand pull" -s v -l verbose -d 'More log output (-vv for even more)'
complete -c rehost -n "__fish_rehost_using_subcommand pull" -s q -l quiet -d 'Less log output (-qq for errors only)'
complete -c rehost -n "__fish_rehost_using_subcommand pull" -s h -l help -d 'Print help'
complete -c rehost -n "__fish_rehost_using_subcommand fleet" -l host -d 'Only this host (repeatable); a named host without backups is shown as such' -r
complete -c rehost -n "__fish_rehost_using_subcommand fleet" -l max-age -d 'How old the newest backup may be: DURATION for every entry, ENTRY=DURATION for entries of that name (repeatable)' -r
complete -c rehost -n "__fish_rehost_using_subcommand fleet" -l metrics -d 'Also write the view as node_exporter textfile metrics to FILE (atomically)' -r -F
complete -c rehost -n "__fish_rehost_using_subcommand fleet" -s c -l config -d 'Configuration file' -r -F
complete -c rehost -n "__fish_rehost_using_subcommand fleet" -l log-format -r -f -a "text\t''
json\t''"
complete -c rehost -n "__fish_rehost_using_subcommand fleet" -l json -d 'Print one JSON document on stdout instead of a table (see the README)'
complete -c rehost -n "__fish_rehost_using_subcommand fleet" -l dry-run -d 'Show what would be uploaded, restored or deleted, and change nothing'
complete -c rehost -n "__fish_rehost_using_subcommand fleet" -s v -l verbose -d 'More log output (-vv for even more)'
complete -c rehost -n "__fish_rehost_using_subcommand fleet" -s q -l quiet -d 'Less log output (-qq for errors only)'
complete -c rehost -n "__fish_rehost_using_subcommand fleet" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rehost -n "__fish_rehost_using_subcommand check" -s c -l config -d 'Configuration file' -r -F
complete -c rehost -n "__fish_rehost_using_subcommand check" -l log-format -r -f -a "text\t''
json\t''"
complete -c rehost -n "__fish_rehost_using_subcommand check" -l json -d 'Print one JSON document on stdout instead of lines (see the README)'
complete -c rehost -n "__fish_rehost_using_subcommand check" -l dry-run -d 'Show what would be uploaded, restored or deleted, and change nothing'
complete -c rehost -n "__fish_rehost_using_subcommand check" -s v -l verbose -d 'More log output (-vv for even more)'
complete -c rehost -n "__fish_rehost_using_subcommand check" -s q -l quiet -d 'Less log output (-qq for errors only)'
complete -c rehost -n "__fish_rehost_using_subcommand check" -s h -l help -d 'Print help'
complete -c rehost -n "__fish_rehost_using_subcommand init" -s c -l config -d 'Configuration file' -r -F
complete -c rehost -n "__fish_rehost_using_subcommand init" -l log-format -r -f -a "text\t''
json\t''"
complete -c rehost -n "__fish_rehost_using_subcommand init" -l dry-run -d 'Show what would be uploaded, restored or deleted, and change nothing'
complete -c rehost -n "__fish_rehost_using_subcommand init" -s v -l verbose -d 'More log output (-vv for even more)'
complete -c rehost -n "__fish_rehost_using_subcommand init" -s q -l quiet -d 'Less log output (-qq for errors only)'
complete -c rehost -n "__fish_rehost_using_subcommand init" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rehost -n "__fish_rehost_using_subcommand run" -l grace -d 'How long running jobs may take to finish after SIGTERM/SIGINT' -r
complete -c rehost -n "__fish_rehost_using_subcommand run" -s c -l config -d 'Configuration file' -r -F
complete -c rehost -n "__fish_rehost_using_subcommand run" -l log-format -r -f -a "text\t''
json\t''"
complete -c rehost -n "__fish_rehost_using_subcommand run" -l allow-root -d 'Run even as root (the daemon needs only the state, content and metrics directories)'
complete -c rehost -n "__fish_rehost_using_subcommand run" -l dry-run -d 'Show what would be uploaded, restored or deleted, and change nothing'
complete -c rehost -n "__fish_rehost_using_subcommand run" -s v -l verbose -d 'More log output (-vv for even more)'
complete -c rehost -n "__fish_rehost_using_subcommand run" -s q -l quiet -d 'Less log output (-qq for errors only)'
complete -c rehost -n "__fish_rehost_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rehost -n "__fish_rehost_using_subcommand status" -s c -l config -d 'Configuration file' -r -F
complete -c rehost -n "__fish_rehost_using_subcommand status" -l log-format -r -f -a "text\t''
json\t''"
complete -c rehost -n "__fish_rehost_using_subcommand status" -l json -d 'Print one JSON document on stdout instead of a table (see the README)'
complete -c rehost -n "__fish_rehost_using_subcommand status" -l dry-run -d 'Show what would be uploaded, restored or deleted, and change nothing'
complete -c rehost -n "__fish_rehost_using_subcommand status" -s v -l verbose -d 'More log output (-vv for even more)'
complete -c rehost -n "__fish_rehost_using_subcommand status" -s q -l quiet -d 'Less log output (-qq for errors only)'
complete -c rehost -n "__fish_rehost_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rehost -n "__fish_rehost_using_subcommand boot" -l docker-timeout -d 'How long to wait for the Docker Engine to answer' -r
complete -c rehost -n "__fish_rehost_using_subcommand boot" -l wait-timeout -d 'Longest wait, in all, for healthchecks and depends_on conditions' -r
complete -c rehost -n "__fish_rehost_using_subcommand boot" -s c -l config -d 'Configuration file' -r -F
complete -c rehost -n "__fish_rehost_using_subcommand boot" -l log-format -r -f -a "text\t''
json\t''"
complete -c rehost -n "__fish_rehost_using_subcommand boot" -l no-run -d 'Stop once the stack is up; do not start the jobs daemon'
complete -c rehost -n "__fish_rehost_using_subcommand boot" -l dry-run -d 'Show what would be uploaded, restored or deleted, and change nothing'
complete -c rehost -n "__fish_rehost_using_subcommand boot" -s v -l verbose -d 'More log output (-vv for even more)'
complete -c rehost -n "__fish_rehost_using_subcommand boot" -s q -l quiet -d 'Less log output (-qq for errors only)'
complete -c rehost -n "__fish_rehost_using_subcommand boot" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rehost -n "__fish_rehost_using_subcommand up" -l wait-timeout -d 'Longest wait, in all, for healthchecks and depends_on conditions' -r
complete -c rehost -n "__fish_rehost_using_subcommand up" -s c -l config -d 'Configuration file' -r -F
complete -c rehost -n "__fish_rehost_using_subcommand up" -l log-format -r -f -a "text\t''
json\t''"
complete -c rehost -n "__fish_rehost_using_subcommand up" -l dry-run -d 'Show what would be uploaded, restored or deleted, and change nothing'
complete -c rehost -n "__fish_rehost_using_subcommand up" -s v -l verbose -d 'More log output (-vv for even more)'
complete -c rehost -n "__fish_rehost_using_subcommand up" -s q -l quiet -d 'Less log output (-qq for errors only)'
complete -c rehost -n "__fish_rehost_using_subcommand up" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rehost -n "__fish_rehost_using_subcommand down" -s c -l config -d 'Configuration file' -r -F
complete -c rehost -n "__fish_rehost_using_subcommand down" -l log-format -r -f -a "text\t''
json\t''"
complete -c rehost -n "__fish_rehost_using_subcommand down" -l volumes -d 'Also remove the project\'s named volumes and the containers\' anonymous volumes'
complete -c rehost -n "__fish_rehost_using_subcommand down" -l dry-run -d 'Show what would be uploaded, restored or deleted, and change nothing'
complete -c rehost -n "__fish_rehost_using_subcommand down" -s v -l verbose -d 'More log output (-vv for even more)'
complete -c rehost -n "__fish_rehost_using_subcommand down" -s q -l quiet -d 'Less log output (-qq for errors only)'
complete -c rehost -n "__fish_rehost_using_subcommand down" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rehost -n "__fish_rehost_using_subcommand completions" -s c -l config -d 'Configuration file' -r -F
complete -c rehost -n "__fish_rehost_using_subcommand completions" -l log-format -r -f -a "text\t''
json\t''"
complete -c rehost -n "__fish_rehost_using_subcommand completions" -l dry-run -d 'Show what would be uploaded, restored or deleted, and change nothing'
complete -c rehost -n "__fish_rehost_using_subcommand completions" -s v -l verbose -d 'More log output (-vv for even more)'
complete -c rehost -n "__fish_rehost_using_subcommand completions" -s q -l quiet -d 'Less log output (-qq for errors only)'
complete -c rehost -n "__fish_rehost_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rehost -n "__fish_rehost_using_subcommand help; and not __fish_seen_subcommand_from backup restore backups verify prune pull fleet check init run status boot up down completions help" -f -a "backup" -d 'Back up state entries now (all of them unless NAMEs are given)'
complete -c rehost -n "__fish_rehost_using_subcommand help; and not __fish_seen_subcommand_from backup restore backups verify prune pull fleet check init run status boot up down completions help" -f -a "restore" -d 'Restore state entries from storage, following each entry\'s `restore:` policy'
complete -c rehost -n "__fish_rehost_using_subcommand help; and not __fish_seen_subcommand_from backup restore backups verify prune pull fleet check init run status boot up down completions help" -f -a "backups" -d 'Inspect the backups in storage'
complete -c rehost -n "__fish_rehost_using_subcommand help; and not __fish_seen_subcommand_from backup restore backups verify prune pull fleet check init run status boot up down completions help" -f -a "verify" -d 'Download a backup and check every checksum and archive entry, without restoring'
complete -c rehost -n "__fish_rehost_using_subcommand help; and not __fish_seen_subcommand_from backup restore backups verify prune pull fleet check init run status boot up down completions help" -f -a "prune" -d 'Apply each entry\'s `keep:` retention policy now'
complete -c rehost -n "__fish_rehost_using_subcommand help; and not __fish_seen_subcommand_from backup restore backups verify prune pull fleet check init run status boot up down completions help" -f -a "pull" -d 'Pull content into each `pull:` entry\'s dest now (all of them unless NAMEs are given)'
complete -c rehost -n "__fish_rehost_using_subcommand help; and not __fish_seen_subcommand_from backup restore backups verify prune pull fleet check init run status boot up down completions help" -f -a "fleet" -d 'Every host\'s backups in the store: per state entry, the newest backup\'s age, size, generation and verification'
complete -c rehost -n "__fish_rehost_using_subcommand help; and not __fish_seen_subcommand_from backup restore backups verify prune pull fleet check init run status boot up down completions help" -f -a "check" -d 'Validate the configuration and storage access; change nothing'
complete -c rehost -n "__fish_rehost_using_subcommand help; and not __fish_seen_subcommand_from backup restore backups verify prune pull fleet check init run status boot up down completions help" -f -a "init" -d 'Register this host in the store (once per new host; idempotent)'
complete -c rehost -n "__fish_rehost_using_subcommand help; and not __fish_seen_subcommand_from backup restore backups verify prune pull fleet check init run status boot up down completions help" -f -a "run" -d 'Run the scheduled jobs (backups, pulls) until SIGTERM or SIGINT'
complete -c rehost -n "__fish_rehost_using_subcommand help; and not __fish_seen_subcommand_from backup restore backups verify prune pull fleet check init run status boot up down completions help" -f -a "status" -d 'Show the last success and attempt of every job, from the metrics files'
complete -c rehost -n "__fish_rehost_using_subcommand help; and not __fish_seen_subcommand_from backup restore backups verify prune pull fleet check init run status boot up down completions help" -f -a "boot" -d 'The boot sequence of a fresh VM: restore state, bring the stack up, run the jobs'
complete -c rehost -n "__fish_rehost_using_subcommand help; and not __fish_seen_subcommand_from backup restore backups verify prune pull fleet check init run status boot up down completions help" -f -a "up" -d 'Reconcile the Docker Engine with the stack\'s compose file (`stack:`)'
complete -c rehost -n "__fish_rehost_using_subcommand help; and not __fish_seen_subcommand_from backup restore backups verify prune pull fleet check init run status boot up down completions help" -f -a "down" -d 'Stop and remove the stack\'s containers and networks (`stack.project`)'
complete -c rehost -n "__fish_rehost_using_subcommand help; and not __fish_seen_subcommand_from backup restore backups verify prune pull fleet check init run status boot up down completions help" -f -a "completions" -d 'Print the completion script for SHELL on stdout'
complete -c rehost -n "__fish_rehost_using_subcommand help; and not __fish_seen_subcommand_from backup restore backups verify prune pull fleet check init run status boot up down completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rehost -n "__fish_rehost_using_subcommand help; and __fish_seen_subcommand_from backups" -f -a "list" -d 'List complete backups: id, time, size, files, checksum'
