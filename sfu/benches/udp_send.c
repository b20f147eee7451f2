/* Is batching UDP sends (sendmmsg) a lever for the forwarding hot path? Sends 1240-byte
 * datagrams from one socket to eight loopback receivers, per packet with sendto and in batches
 * of 8 and 64 with sendmmsg, draining the receivers as it goes, and prints ns per packet.
 *
 *   cc -O2 sfu/benches/udp_send.c -o /tmp/udp_send && /tmp/udp_send
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { RECEIVERS = 8, PACKETS = 200000, SIZE = 1240 };

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static int rx[RECEIVERS];
static struct sockaddr_in addr[RECEIVERS];

static void drain(void) {
  char b[2048];
  for (int k = 0; k < RECEIVERS; k++)
    while (recv(rx[k], b, sizeof b, MSG_DONTWAIT) > 0) {
    }
}

int main(void) {
  int tx = socket(AF_INET, SOCK_DGRAM, 0);
  for (int i = 0; i < RECEIVERS; i++) {
    rx[i] = socket(AF_INET, SOCK_DGRAM, 0);
    memset(&addr[i], 0, sizeof addr[i]);
    addr[i].sin_family = AF_INET;
    addr[i].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(rx[i], (struct sockaddr *)&addr[i], sizeof addr[i]);
    socklen_t l = sizeof addr[i];
    getsockname(rx[i], (struct sockaddr *)&addr[i], &l);
  }
  char buf[SIZE];
  memset(buf, 7, sizeof buf);
  for (int round = 0; round < 3; round++) {
    double t0 = now_ns();
    for (int i = 0; i < PACKETS; i++) {
      sendto(tx, buf, sizeof buf, 0, (struct sockaddr *)&addr[i % RECEIVERS], sizeof addr[0]);
      if (i % 64 == 63) drain();
    }
    printf("sendto:          %4.0f ns/packet\n", (now_ns() - t0) / PACKETS);
    for (int batch = 8; batch <= 64; batch *= 8) {
      struct mmsghdr m[64];
      struct iovec io[64];
      for (int i = 0; i < batch; i++) {
        io[i].iov_base = buf;
        io[i].iov_len = sizeof buf;
        memset(&m[i], 0, sizeof m[i]);
        m[i].msg_hdr.msg_iov = &io[i];
        m[i].msg_hdr.msg_iovlen = 1;
        m[i].msg_hdr.msg_name = &addr[i % RECEIVERS];
        m[i].msg_hdr.msg_namelen = sizeof addr[0];
      }
      t0 = now_ns();
      for (int i = 0; i < PACKETS; i += batch) {
        sendmmsg(tx, m, batch, 0);
        if ((i + batch) % 64 == 0) drain();
      }
      printf("sendmmsg (%2d):   %4.0f ns/packet\n", batch, (now_ns() - t0) / PACKETS);
    }
  }
  return 0;
}
