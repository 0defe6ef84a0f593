# Slim runtime image for supervise. Usage:
#   docker build -t ipc-supervisor .
#   docker run --rm -it ipc-supervisor -- python examples/fake_loopwork.py
#   docker run --rm -it -p 9464:9464 -v ipc-state:/var/lib/ipc-supervisor ipc-supervisor \
#       --metrics-host 0.0.0.0 --metrics-port 9464 -- python examples/fake_loopwork.py
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends tmux \
    && rm -rf /var/lib/apt/lists/*

# The event journal (durable routes, replay) lives here: mount a volume to keep it.
ENV XDG_STATE_HOME=/var/lib/ipc-supervisor
VOLUME /var/lib/ipc-supervisor
EXPOSE 9464

WORKDIR /app
COPY pyproject.toml README.md ./
COPY supervisor ./supervisor
COPY adapters ./adapters
COPY examples ./examples
RUN pip install --no-cache-dir .

ENTRYPOINT ["python", "-m", "supervisor"]
CMD ["--", "python", "examples/fake_loopwork.py"]
