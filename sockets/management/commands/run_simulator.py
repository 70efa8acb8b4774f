"""`manage.py run_simulator`: serve a simulated Tasmota plug until Ctrl-C or SIGTERM."""
import signal

from django.core.management.base import BaseCommand

from sockets.simulator import PlugSimulator, SimulatorServer


class Command(BaseCommand):
    help = "Serve a simulated Tasmota HTTP plug (see docs/device-protocols.md §1)."
    requires_system_checks = []  # the simulator needs nothing from the project to be valid

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--load-w", type=float, default=60.0, help="active power while ON, in W")
        parser.add_argument("--password", default=None, help="WebPassword; /cm then needs user=admin")
        parser.add_argument("--device-name", default="Lab Plug")
        parser.add_argument("--require-referer", action="store_true", help="behave like SetOption128 0")
        parser.add_argument("--verbose-http", action="store_true", help="log every request to stderr")
        parser.add_argument("--fleet", type=int, default=0, metavar="N", help="also serve N plugs at /plug/1 … /plug/N (benchmarks)")

    def handle(self, *args, **options):
        plug = PlugSimulator(device_name=options["device_name"], load_w=options["load_w"],
                             password=options["password"], require_referer=options["require_referer"])
        fleet = {str(n): PlugSimulator(device_name=f"Fleet Plug {n}", load_w=options["load_w"]) for n in range(1, options["fleet"] + 1)}
        server = SimulatorServer(plug, host=options["host"], port=options["port"], verbose=options["verbose_http"], plugs=fleet)
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C
        with server:
            self.stdout.write(f"Simulated Tasmota plug listening on {server.url}")
            if fleet:
                self.stdout.write(f"and {len(fleet)} more at {server.url}/plug/1 … {server.url}/plug/{len(fleet)}")
            self.stdout.flush()
            try:
                while True:
                    signal.pause()
            except KeyboardInterrupt:
                self.stdout.write("Simulator stopped.")
