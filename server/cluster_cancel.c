/*
 * Cancelling a cluster job (fp_cluster_jobs_cancel): the job marked and the
 * cancel announced to every node (cluster_run.c kills the calls), or a
 * finished job forgotten.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_jobs_impl.h"

/*
 * A finished job (finished_at set) is forgotten; an unfinished one is
 * marked (cancel) and announced. The mark and the message go together, so
 * a node that pulls a chunk of it after the message reads the mark. The
 * state becomes "cancelled" when the last chunk lands (land_script), every
 * item accounted for, as a single node's cancelled job is.
 */
static const char cancel_script[] =
	"local h = redis.call('HMGET', KEYS[1], 'state', 'finished_at')\n"
	"if not h[1] then return -1 end\n"
	"if h[2] and h[2] ~= '0' then redis.call('DEL', KEYS[1], KEYS[2])"
	" redis.call('ZREM', KEYS[3], ARGV[2]) return 0 end\n"
	"redis.call('HSET', KEYS[1], 'cancel', '1')\n"
	"redis.call('PUBLISH', ARGV[1], ARGV[2])\n"
	"return 1\n";

static void cancel_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	struct fp_cluster_op *op = data;

	(void)r;
	if (status == 0)
		status = reply->type != REDIS_REPLY_INTEGER ? -EIO :
			 reply->integer < 0 ? -ENOENT : (int)reply->integer;
	if (!op->dropped)
		op->cb.status(op->data, status);
	free(op);
}

int fp_cluster_jobs_cancel(fp_cluster_jobs *cj, const char *id, fp_cluster_status_cb cb,
			   void *data, struct fp_cluster_op **opp)
{
	char *job_key, *results_key;
	struct fp_cluster_op *op;
	int r = -ENOMEM;

	if (!fp_cluster_id_valid(id, strlen(id)))
		return -ENOENT;
	if (fp_redis_state(cj->cmd) != FP_REDIS_READY)
		return -ENOTCONN;
	op = fp__cj_op_new(cj, data);
	job_key = fp__cj_key(cj, "job:", id, NULL);
	results_key = fp__cj_key(cj, "results:", id, NULL);
	if (op && job_key && results_key) {
		const char *argv[] = { "EVAL", cancel_script, "3", job_key, results_key,
				       cj->jobs_key, cj->cancel_channel, id };
		size_t lens[] = { 4, sizeof(cancel_script) - 1, 1, strlen(job_key),
				  strlen(results_key), strlen(cj->jobs_key),
				  strlen(cj->cancel_channel), strlen(id) };

		snprintf(op->id, sizeof(op->id), "%s", id);
		op->cb.status = cb;
		r = fp_redis_command(cj->cmd, cancel_cb, op, 8, argv, lens);
	}
	if (r == 0)
		*opp = op;
	else
		free(op);
	free(results_key);
	free(job_key);
	return r;
}
