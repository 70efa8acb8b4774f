"""A socket's device on a driver other than Tasmota over HTTP, with the faults its transport can have."""
from sockets.services import socket_update
from sockets.shelly_simulator import ShellyServer, ShellySimulator
from sockets.simulator import PlugSimulator
from sockets.simulator_mqtt import MqttPlug


class OtherDevice:
    """`socket`'s device on another driver (a simulator over real HTTP or MQTT), with its transport's faults:
    `timeout` (the device takes the request and never answers), `http500` (a Shelly's HTTP 500 with an RPC error; over MQTT the firmware's
    `{"Command":"Error"}`), `garbage` (an answer that is not JSON), `refuse` (nothing listens: the Shelly's HTTP
    server, or the MQTT broker, is down), `wrong_state` (the Tasmota answers the other state and keeps its relay)."""

    def __init__(self, driver: str, broker, socket):
        self.driver, self.broker, self.socket = driver, broker, socket
        if self.driver == "shelly_rpc":
            self.shelly = ShellyServer(ShellySimulator()).start()
            self.port = int(self.shelly.url.rsplit(":", 1)[1])
            socket_update(socket_id=socket.pk, driver="shelly_rpc", address=self.shelly.url)
        else:
            self.mqtt = MqttPlug(plug=PlugSimulator(), port=self.broker.port, topic="lab_plug_1").start()
            socket_update(socket_id=socket.pk, driver="tasmota_mqtt", address=f"{self.broker.url}/lab_plug_1")

    @property
    def is_on(self) -> bool:
        return self.shelly.device.is_on(0) if self.driver == "shelly_rpc" else self.mqtt.plug.is_on

    def set_fault(self, fault: str) -> None:
        if fault == "refuse" and self.driver == "shelly_rpc":
            self.shelly.stop()
        elif fault == "refuse":
            self.broker.kill()  # its config stays, for the restart on the same port
        elif self.driver == "shelly_rpc":
            self.shelly.device.fault = fault
        else:
            self.mqtt.plug.set_fault(fault)

    def clear_fault(self, fault: str) -> None:
        if fault == "refuse" and self.driver == "shelly_rpc":
            self.shelly = ShellyServer(self.shelly.device, port=self.port).start()
        elif fault == "refuse":
            self.broker.start()
        elif self.driver == "shelly_rpc":
            self.shelly.device.fault = None
        else:
            self.mqtt.plug.clear_fault()

    def close(self) -> None:
        if self.driver == "shelly_rpc":
            self.shelly.stop()
        else:
            self.mqtt.stop()
