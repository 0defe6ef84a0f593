# Slim runtime image for supervise. Usage:
#   docker build -t ipc-supervisor .
#   docker run --rm -it ipc-supervisor -- python examples/fake_loopwork.py
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends tmux \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY supervisor ./supervisor
COPY adapters ./adapters
COPY examples ./examples
RUN pip install --no-cache-dir .

ENTRYPOINT ["python", "-m", "supervisor"]
CMD ["--", "python", "examples/fake_loopwork.py"]
